/// Batched palettization: one independent 1-D k-means per row.
///
/// Per-channel and grouped-channel palettization (one codebook per output
/// channel or per group of channels) cluster many small runs of values; one
/// call clusters all of them, rows spread over the worker threads, so the
/// caller pays one boundary crossing instead of one per channel.
extension KMeans1D {
    /// Clusters each of the `rows` consecutive runs of `rowLength` values of
    /// `x` on its own (exactly as `KMeans1D(row, clusters: k, ...)` followed by
    /// `Codebook.assign`), writing row r's ascending centroids to
    /// `centroids[r*k ..< (r+1)*k]` and its indices to
    /// `indices[r*rowLength ..< (r+1)*rowLength]`.
    /// - Returns: the largest number of Lloyd iterations any row ran.
    /// - Throws: ``SwiftPruneError`` for NaN/Inf, `k` outside 1...65536 (or
    ///   above what `I` can index), negative `maxIterations` or sizes that do
    ///   not match.
    @_specialize(where I == UInt8)
    @_specialize(where I == UInt16)
    public static func fitRows<I: FixedWidthInteger & UnsignedInteger>(
        _ x: UnsafeBufferPointer<Float>, rows: Int, rowLength: Int, clusters k: Int,
        initialization: ClusterInitialization = .linear, maxIterations: Int = 100, seed: UInt64 = 0,
        centroids: UnsafeMutableBufferPointer<Float>, indices: UnsafeMutableBufferPointer<I>
    ) throws -> Int {
        guard rows >= 0, rowLength >= 0 else {
            throw SwiftPruneError.value("rows and row_length must be >= 0, got \(rows) and \(rowLength)")
        }
        guard k >= 1 && k <= 65536 else { throw SwiftPruneError.value("n_clusters must be in 1..65536, got \(k)") }
        guard k <= Int(I.max) + 1 else {
            throw SwiftPruneError.value("\(k) clusters do not fit \(I.bitWidth)-bit indices")
        }
        guard maxIterations >= 0 else { throw SwiftPruneError.value("max_iter must be >= 0, got \(maxIterations)") }
        let (total, overflow) = rows.multipliedReportingOverflow(by: rowLength)
        let (codebook, overflow2) = rows.multipliedReportingOverflow(by: k)
        guard !overflow, !overflow2, x.count == total, indices.count == total, centroids.count == codebook else {
            throw SwiftPruneError.value("sizes do not match: \(rows) rows of \(rowLength) values and \(k) clusters "
                                        + "need \(rows)x\(rowLength) values and indices and \(rows)x\(k) centroids")
        }
        guard total > 0 else {  // empty rows: zero codebooks, as KMeans1D gives for no values
            for j in 0 ..< centroids.count { centroids[j] = 0 }
            return 0
        }
        // Enough rows per worker to pay for a thread, never more workers than rows.
        let workers = Swift.min(rows, Threading.workerCount(for: total + rows * k * 8, minimumPerWorker: 1 << 14))
        var iterations = [Int](repeating: 0, count: workers)
        try iterations.withUnsafeMutableBufferPointer { ranBuffer in
            let ran = ranBuffer.baseAddress!
            let src = x.baseAddress!, book = centroids.baseAddress!, dst = indices.baseAddress!
            try parallelForThrowing(workers: workers) { worker in
                for r in partitionRange(rows, parts: workers, index: worker) {
                    let row = UnsafeBufferPointer(start: src + r * rowLength, count: rowLength)
                    let fit = try KMeans1D(row, clusters: k, initialization: initialization,
                                           maxIterations: maxIterations, seed: seed)
                    let codebook = UnsafeMutableBufferPointer(start: book + r * k, count: k)
                    for j in 0 ..< k { codebook[j] = fit.centroids[j] }
                    ran[worker] = Swift.max(ran[worker], fit.iterations)
                    try Codebook.assign(row, centroids: UnsafeBufferPointer(codebook),
                                        into: UnsafeMutableBufferPointer(start: dst + r * rowLength,
                                                                         count: rowLength))
                }
            }
        }
        return iterations.max() ?? 0
    }
}
