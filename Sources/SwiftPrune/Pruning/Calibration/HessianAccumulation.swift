/// Streaming Hessians of calibration inputs: `h += XᵀX` for one batch `x`
/// (`samples × features`, row-major) into the `features × features` Double
/// matrix `h`, so that GPTQ/SparseGPT/Wanda statistics of millions of tokens
/// cost `O(features²)` memory.
///
/// The products run through the packed GEMM kernels computing only the upper
/// triangle (as ``syrk(transA:n:k:alpha:a:lda:c:ldc:)``, half the work of a
/// GEMM) on chunks of ``hessianChunkSamples`` samples, in `S` (Float for
/// Float input, as the reference GPTQ/SparseGPT form their Hessians in
/// float32); each chunk's partial Gram matrix is added into both triangles
/// of `h` in Double, so rounding does not grow with the number of samples.
///
/// `scratch` (at least `features²` elements of `S`) holds the partial Gram
/// matrix. A caller adding many batches passes the same scratch to every
/// call: without it each call allocates one (64 MB at 4096 features), and the
/// system maps, faults in and zeroes those fresh pages every time.
/// - Throws: ``SwiftPruneError`` for negative sizes, a buffer of the wrong
///   size, or NaN/Inf in `x` (`h` unchanged); `.outOfMemory` when the scratch
///   or the packing buffers are refused (`h` unchanged when that happens in
///   the first chunk; later chunks reuse the first one's packing buffers).
@_specialize(where S == Float)
@_specialize(where S == Double)
public func accumulateHessian<S: GEMMScalar>(
    _ x: UnsafeBufferPointer<S>, samples: Int, features: Int, into h: UnsafeMutableBufferPointer<Double>,
    scratch: UnsafeMutableBufferPointer<S>? = nil
) throws {
    guard samples >= 0 && features >= 0 else { throw SwiftPruneError.value("negative matrix size") }
    let (count, o1) = samples.multipliedReportingOverflow(by: features)
    let (square, o2) = features.multipliedReportingOverflow(by: features)
    guard !o1 && !o2 && count == x.count else {
        throw SwiftPruneError.value("x has \(x.count) elements, expected \(samples) x \(features)")
    }
    guard h.count == square else {
        throw SwiftPruneError.value("the Hessian has \(h.count) entries, expected \(features) x \(features)")
    }
    if let scratch, scratch.count < square {
        throw SwiftPruneError.value("the scratch has \(scratch.count) entries, expected at least \(features) x \(features)")
    }
    guard count > 0 else { return }
    let source = x.baseAddress!
    // Finite check, in parallel over rows (the batch may be large).
    let checkWorkers = Threading.workerCount(for: count, minimumPerWorker: 1 << 18)
    var badRow = Array(repeating: -1, count: checkWorkers)
    badRow.withUnsafeMutableBufferPointer { bad in
        parallelFor(workers: checkWorkers) { worker in
            for s in partitionRange(samples, parts: checkWorkers, index: worker) {
                let row = source + s * features
                var finite = true
                for j in 0 ..< features where !row[j].isFinite { finite = false }
                if !finite { bad[worker] = s; return }
            }
        }
    }
    if let row = badRow.first(where: { $0 >= 0 }) {
        throw SwiftPruneError.value("the calibration inputs contain NaN or Inf values (sample \(row))")
    }
    let n = features
    let owned = scratch == nil ? try FallibleAllocation.allocate(S.self, count: square, "the Hessian's partial sums") : nil
    defer { FallibleAllocation.free(owned) }
    let part = owned ?? scratch!.baseAddress!
    let target = h.baseAddress!
    var s0 = 0
    while s0 < samples {
        let k = Swift.min(hessianChunkSamples, samples - s0)
        try upperGram(n: n, k: k, a: source + s0 * n, into: part)
        addMirrored(upper: part, n: n, into: target)
        s0 += k
    }
}

/// Samples per partial Gram matrix of ``accumulateHessian(_:samples:features:into:scratch:)``.
public let hessianChunkSamples = 4096

/// The upper triangle (`j >= i`) of `AᵀA` for `A` stored `k × n` into `c`
/// (`n × n`): ``syrk(transA:n:k:alpha:a:lda:c:ldc:)``'s products without its
/// zeroing pass (the first depth block writes each tile) and without its
/// mirroring, whose column-order reads of a 64 MB matrix cost more than the
/// products of a small batch. Entries below the diagonal are unspecified.
@inline(__always)
private func upperGram<S: GEMMScalar>(n: Int, k: Int, a: UnsafePointer<S>, into c: UnsafeMutablePointer<S>) throws {
    let (nn, o1) = n.multipliedReportingOverflow(by: n)
    let (work, o2) = nn.multipliedReportingOverflow(by: k)
    let workers = (o1 || o2) ? Threading.threadCount : Threading.workerCount(for: work / 2, minimumPerWorker: 1 << 21)
    var driver = GEMMDriver<S>(transA: true, transB: false, m: n, n: n, k: k,
                               alpha: 1, a: a, lda: n, b: a, ldb: n, c: c, ldc: n)
    driver.upperOnly = true
    driver.overwrite = true
    try driver.runChecked(workers: workers)
}

/// Tile edge of ``addMirrored(upper:n:into:)``: a 64 × 64 Double tile (32 KB)
/// and its transpose stay in L1/L2 while both are written.
private let mirrorTile = 64

/// `h[i][j] += upper[i][j]` and `h[j][i] += upper[i][j]` for `j >= i`, in
/// Double, tile by tile so that the transposed writes stay in cache. Each
/// worker owns whole tile rows (interleaved for balance: row `t` has
/// `tiles - t` tiles); tile `(t, u)` and its mirror `(u, t)` are written only
/// by the owner of row `t`, so workers never write the same entry.
private func addMirrored<S: GEMMScalar>(upper: UnsafeMutablePointer<S>, n: Int, into h: UnsafeMutablePointer<Double>) {
    let tiles = (n + mirrorTile - 1) / mirrorTile
    let workers = Swift.min(tiles, Threading.workerCount(for: n * n, minimumPerWorker: 1 << 18))
    parallelFor(workers: workers) { worker in
        for t in stride(from: worker, to: tiles, by: workers) {
            let i0 = t * mirrorTile, i1 = Swift.min(n, i0 + mirrorTile)
            for u in t ..< tiles {
                let j0 = u * mirrorTile, j1 = Swift.min(n, j0 + mirrorTile)
                for i in i0 ..< i1 {
                    let row = upper + i * n, out = h + i * n
                    for j in Swift.max(j0, i) ..< j1 {
                        let v = Double(row[j])
                        out[j] += v
                        if j != i { h[j * n + i] += v }
                    }
                }
            }
        }
    }
}
