/// The options of GPTQ beyond the integer grid.
public struct GPTQOptions: Sendable, Equatable {
    /// Columns per scale (must divide the input width); `nil`: one scale per row.
    public var groupSize: Int? = 128
    /// `H += damp · mean(diag H) · I` before factorizing.
    public var damp: Double = 0.01
    /// Columns per lazy-update block (rounded to a multiple of the group size).
    public var blockSize: Int = 128
    /// Quantize columns in decreasing order of `diag H` (the paper's
    /// "act-order"): the columns with the most input energy first, while many
    /// columns are left to absorb their error. With groups, act-order uses
    /// static groups (the layout stores one scale per group of consecutive
    /// original columns).
    public var actOrder: Bool = false
    /// Compute every group's scale from the weights before any update (as
    /// the reference's `static_groups`), instead of when the group is reached.
    public var staticGroups: Bool = false
    /// Search the clipping range of each scale on a grid of `mseGrid` shrink
    /// factors `1 - k/mseGrid` (`k < maxShrink · mseGrid`) for the least
    /// squared rounding error of the group (the reference `Quantizer`'s
    /// `mse=True`, with the norm 2); 0: min–max.
    public var mseGrid: Int = 0
    /// The largest shrink tried by the search.
    public var maxShrink: Double = 0.8

    public init() {}
}

extension GPTQ {
    /// GPTQ from a precomputed Hessian `h = XᵀX` (any positive multiple: the
    /// damping is relative to its mean diagonal), row-major `cols × cols`,
    /// consumed (overwritten) by the call. See ``GPTQ`` for the algorithm and
    /// ``GPTQOptions`` for act-order, static groups and the MSE search.
    /// - Throws: ``SwiftPruneError`` for NaN/Inf, bad sizes or options, or a
    ///   Hessian that is not positive definite after damping.
    public static func quantize(
        weights: UnsafeBufferPointer<Double>, rows: Int, cols: Int,
        hessian: UnsafeMutableBufferPointer<Double>, scheme: QuantizationScheme, options: GPTQOptions
    ) throws -> QuantizedTensor {
        guard rows >= 0, cols >= 0 else { throw SwiftPruneError.value("negative dimension") }
        let (wCount, o1) = rows.multipliedReportingOverflow(by: cols)
        let (hCount, o2) = cols.multipliedReportingOverflow(by: cols)
        guard !o1, !o2, weights.count == wCount, hessian.count == hCount else {
            throw SwiftPruneError.value("w must be (rows, cols) = (\(rows), \(cols)) and the Hessian (cols, cols)")
        }
        let damp = options.damp
        guard damp >= 0 && damp.isFinite else {
            throw SwiftPruneError.value("damp must be a finite number >= 0, got \(damp)")
        }
        guard options.blockSize >= 1 else { throw SwiftPruneError.value("block_size must be >= 1, got \(options.blockSize)") }
        guard options.mseGrid >= 0 && options.mseGrid <= 10_000 else {
            throw SwiftPruneError.value("mse_grid must be in 0...10000, got \(options.mseGrid)")
        }
        guard options.maxShrink > 0 && options.maxShrink < 1 else {
            throw SwiftPruneError.value("max_shrink must be in (0, 1), got \(options.maxShrink)")
        }
        let groupSize = options.groupSize
        let layout = try QuantizationLayout(shape: [rows, cols], axis: 0, groupSize: groupSize)
        guard cols <= maximumColumns else {
            throw SwiftPruneError(.outOfMemory, "gptq needs three \(cols) x \(cols) float64 matrices; at most \(maximumColumns) input columns are supported")
        }
        for v in weights where !v.isFinite { throw SwiftPruneError.value("weights contain NaN or Inf values") }
        for v in hessian where !v.isFinite { throw SwiftPruneError.value("the Hessian contains NaN or Inf values") }
        let group = groupSize ?? Swift.max(cols, 1)
        let block = groupSize.map { g in g >= options.blockSize ? g : g * (options.blockSize / g) } ?? options.blockSize
        // Act-order stores scales per original group, so its groups are static.
        let staticGroups = groupSize != nil && (options.staticGroups || options.actOrder)
        let search = SearchedRange(scheme: scheme, grid: options.mseGrid, maxShrink: options.maxShrink)

        var w = Array(weights)
        let h = hessian.baseAddress
        var diagonalSum = 0.0
        for i in 0 ..< cols {
            if h![i * cols + i] == 0 {
                h![i * cols + i] = 1
                for r in 0 ..< rows { w[r * cols + i] = 0 }
            }
            diagonalSum += h![i * cols + i]
        }
        let groupsPerRow = layout.scaleShape[1]
        var scales = [Float](repeating: 1, count: rows * groupsPerRow)
        var zeroPoints = [Int32](repeating: 0, count: rows * groupsPerRow)
        // Scales fixed before any update: per row (no groups) or per static group.
        if (groupSize == nil || staticGroups) && cols > 0 {
            for r in 0 ..< rows {
                for g in 0 ..< groupsPerRow {
                    let p = w.withUnsafeBufferPointer { search.parameters($0.baseAddress! + r * cols + g * group, group) }
                    scales[r * groupsPerRow + g] = p.scale
                    zeroPoints[r * groupsPerRow + g] = p.zeroPoint
                }
            }
        }
        // Act-order permutation: decreasing diag H, the lower index first among ties.
        var order = Array(0 ..< cols)
        if options.actOrder {
            let diagonal = (0 ..< cols).map { h![$0 * cols + $0] }
            order.sort { diagonal[$0] != diagonal[$1] ? diagonal[$0] > diagonal[$1] : $0 < $1 }
            var permuted = [Double](repeating: 0, count: rows * cols)
            for r in 0 ..< rows { for i in 0 ..< cols { permuted[r * cols + i] = w[r * cols + order[i]] } }
            w = permuted
        }
        let mean = cols > 0 ? diagonalSum / Double(cols) : 0
        // U = J · inverse(cholesky(J H J)) · J is the upper Cholesky factor of H⁻¹ (in the column order used).
        var reversed = [Double](repeating: 0, count: cols * cols)
        for i in 0 ..< cols {
            let pi = order[cols - 1 - i]
            for j in 0 ... i {
                reversed[i * cols + j] = h![pi * cols + order[cols - 1 - j]]
            }
            reversed[i * cols + i] += damp * mean
        }
        try GPTQLinearAlgebra.cholesky(&reversed, n: cols)
        let inverse = try GPTQLinearAlgebra.invertLower(reversed, n: cols)
        reversed = []
        var u = [Double](repeating: 0, count: cols * cols)
        for i in 0 ..< cols { for j in i ..< cols { u[i * cols + j] = inverse[(cols - 1 - i) * cols + (cols - 1 - j)] } }

        var storage = [UInt8](repeating: 0, count: rows * cols)
        var errors = [Double](repeating: 0, count: rows * block)
        let workers = Swift.min(Threading.workerCount(for: rows * block * block, minimumPerWorker: 1 << 18),
                                Swift.max(rows, 1))
        let qmin = scheme.qmin, qmax = scheme.qmax
        let dynamicGroups = groupSize != nil && !staticGroups

        try w.withUnsafeMutableBufferPointer { wb in
            try u.withUnsafeBufferPointer { ub in
                try scales.withUnsafeMutableBufferPointer { sb in
                    try zeroPoints.withUnsafeMutableBufferPointer { zb in
                        try storage.withUnsafeMutableBufferPointer { qb in
                            try errors.withUnsafeMutableBufferPointer { eb in
                                try order.withUnsafeBufferPointer { ob in
                                    guard rows > 0 && cols > 0 else { return }
                                    let W = wb.baseAddress!, U = ub.baseAddress!, S = sb.baseAddress!
                                    let Z = zb.baseAddress!, Q = qb.baseAddress!, E = eb.baseAddress!
                                    let O = ob.baseAddress!
                                    var i1 = 0
                                    while i1 < cols {
                                        let i2 = Swift.min(cols, i1 + block), width = i2 - i1
                                        // Columns of the block, rows in parallel; errors kept for the lazy update.
                                        parallelFor(workers: workers) { worker in
                                            for r in partitionRange(rows, parts: workers, index: worker) {
                                                let row = W + r * cols
                                                for i in i1 ..< i2 {
                                                    let original = O[i]
                                                    let slot = r * groupsPerRow + original / group
                                                    if dynamicGroups && i % group == 0 {
                                                        let p = search.parameters(row + i, group)
                                                        S[slot] = p.scale
                                                        Z[slot] = p.zeroPoint
                                                    }
                                                    let scale = Double(S[slot]), zero = Z[slot]
                                                    let value = row[i]
                                                    let t = Swift.min(Swift.max(value / scale, Double(qmin - zero)), Double(qmax - zero))
                                                    let q = t.roundedToInt32 &+ zero
                                                    Q[r * cols + original] = UInt8(truncatingIfNeeded: q)
                                                    let dequantized = Double(Float(q &- zero) * Float(scale))
                                                    let error = (value - dequantized) / U[i * cols + i]
                                                    E[r * width + (i - i1)] = error
                                                    GPTQLinearAlgebra.axpy(error, U + i * cols + i + 1, row + i + 1, i2 - i - 1)
                                                }
                                            }
                                        }
                                        // The columns after the block, all rows at once: one GEMM.
                                        try GPTQLinearAlgebra.subtractProduct(
                                            w: W, rows: rows, cols: cols, e: UnsafePointer(E), width: width,
                                            u: U, from: i1, to: i2)
                                        i1 = i2
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return try QuantizedTensor(layout: layout, scheme: scheme, storage: storage, scales: scales, zeroPoints: zeroPoints)
    }
}

/// The scale and zero point of a group of weights: min–max, or the clipping
/// range `[p·lo, p·hi]` (`p = 1 - k/grid`) with the least squared rounding
/// error (GPTQ's `Quantizer` with `mse=True`); the range always includes 0.
struct SearchedRange {
    let scheme: QuantizationScheme
    let grid: Int
    let maxShrink: Double

    func parameters(_ x: UnsafePointer<Double>, _ count: Int) -> (scale: Float, zeroPoint: Int32) {
        var lo = 0.0, hi = 0.0
        for c in 0 ..< count { lo = Swift.min(lo, x[c]); hi = Swift.max(hi, x[c]) }
        var best = scheme.parameters(lo: lo, hi: hi, as: Double.self)
        guard grid > 0 && (lo != 0 || hi != 0) else { return best }
        var bestError = error(x, count, best)
        let steps = Int((maxShrink * Double(grid)).rounded(.down))
        var k = 1
        while k < steps {
            let p = 1 - Double(k) / Double(grid)
            let candidate = scheme.parameters(lo: p * lo, hi: p * hi, as: Double.self)
            let e = error(x, count, candidate)
            if e < bestError { bestError = e; best = candidate }
            k += 1
        }
        return best
    }

    @inline(__always)
    func error(_ x: UnsafePointer<Double>, _ count: Int, _ p: (scale: Float, zeroPoint: Int32)) -> Double {
        let scale = Double(p.scale), zero = p.zeroPoint
        let lower = Double(scheme.qmin - zero), upper = Double(scheme.qmax - zero)
        var total = 0.0
        for c in 0 ..< count {
            let t = Swift.min(Swift.max(x[c] / scale, lower), upper)
            let d = x[c] - Double(Float(t.roundedToInt32) * Float(scale))
            total += d * d
        }
        return total
    }
}
