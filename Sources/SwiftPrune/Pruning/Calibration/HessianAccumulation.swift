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

/// Block edge of ``addMirrored(upper:n:into:)``: an 8 × 8 block of Double is
/// eight 64-byte rows, so the mirrored block is written as eight short rows
/// instead of a column. A column walk over a power-of-two-wide matrix (4096
/// doubles: a 32 KB stride) maps every entry to the same L1 set and thrashes.
private let mirrorBlock = 8

/// `h[i][j] += upper[i][j]` and `h[j][i] += upper[i][j]` for `j >= i`, in
/// Double. Each 8 × 8 block above the diagonal is read once (eight row
/// pieces), added to its place and, transposed through a 64-entry local
/// copy, to its mirror, so every cache line is used whole once. Workers own
/// whole block rows (interleaved for balance: block row `t` has
/// `blocks - t` blocks); block `(t, u)` and its mirror `(u, t)` are written
/// only by the owner of row `t`, so workers never write the same entry.
private func addMirrored<S: GEMMScalar>(upper: UnsafeMutablePointer<S>, n: Int, into h: UnsafeMutablePointer<Double>) {
    let b = mirrorBlock
    let blocks = (n + b - 1) / b
    let workers = Swift.min(blocks, Threading.workerCount(for: n * n, minimumPerWorker: 1 << 18))
    parallelFor(workers: workers) { worker in
        withUnsafeTemporaryAllocation(of: Double.self, capacity: b * b) { block in
            let tile = block.baseAddress!
            for t in stride(from: worker, to: blocks, by: workers) {
                let i0 = t * b, i1 = Swift.min(n, i0 + b)
                for u in t ..< blocks {
                    let j0 = u * b, j1 = Swift.min(n, j0 + b)
                    if u == t || i1 - i0 < b || j1 - j0 < b {
                        // The diagonal block (only j >= i) and the partial blocks at the edges.
                        for i in i0 ..< i1 {
                            for j in Swift.max(j0, i) ..< j1 {
                                let v = Double(upper[i * n + j])
                                h[i * n + j] += v
                                if j != i { h[j * n + i] += v }
                            }
                        }
                        continue
                    }
                    for r in 0 ..< b {
                        let source = upper + (i0 + r) * n + j0, target = h + (i0 + r) * n + j0
                        for c in 0 ..< b {
                            let v = Double(source[c])
                            target[c] += v
                            tile[c * b + r] = v
                        }
                    }
                    for c in 0 ..< b {
                        let target = h + (j0 + c) * n + i0, column = tile + c * b
                        for r in 0 ..< b { target[r] += column[r] }
                    }
                }
            }
        }
    }
}
