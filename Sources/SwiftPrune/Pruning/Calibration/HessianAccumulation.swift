/// Streaming Hessians of calibration inputs: `h += XᵀX` for one batch `x`
/// (`samples × features`, row-major) into the `features × features` Double
/// matrix `h`, so that GPTQ/SparseGPT/Wanda statistics of millions of tokens
/// cost `O(features²)` memory.
///
/// The products run through ``syrk(transA:n:k:alpha:a:lda:c:ldc:)`` (the
/// packed GEMM kernels, half the work of a GEMM) on chunks of
/// ``hessianChunkSamples`` samples, in `S` (Float for Float input, as the
/// reference GPTQ/SparseGPT form their Hessians in float32); each chunk's
/// partial Gram matrix is added into `h` in Double, so rounding does not grow
/// with the number of samples.
/// - Throws: ``SwiftPruneError`` for negative sizes, a buffer of the wrong
///   size, or NaN/Inf in `x`.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func accumulateHessian<S: GEMMScalar>(
    _ x: UnsafeBufferPointer<S>, samples: Int, features: Int, into h: UnsafeMutableBufferPointer<Double>
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
    let scratch = try FallibleAllocation.allocate(S.self, count: square, "the Hessian's partial sums")
    defer { FallibleAllocation.free(scratch) }
    let target = h.baseAddress!
    var s0 = 0
    while s0 < samples {
        let k = Swift.min(hessianChunkSamples, samples - s0)
        try syrk(transA: true, n: n, k: k, alpha: 1, a: source + s0 * n, lda: n, c: scratch, ldc: n)
        let workers = Threading.workerCount(for: square, minimumPerWorker: 1 << 18)
        parallelFor(workers: workers) { worker in
            for i in partitionRange(n, parts: workers, index: worker) {
                let out = target + i * n, part = scratch + i * n
                for j in 0 ..< n { out[j] += Double(part[j]) }
            }
        }
        s0 += k
    }
}

/// Samples per ``syrk(transA:n:k:alpha:a:lda:c:ldc:)`` call of ``accumulateHessian(_:samples:features:into:)``.
public let hessianChunkSamples = 4096
