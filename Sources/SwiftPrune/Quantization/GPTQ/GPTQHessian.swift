#if arch(x86_64)
import SwiftPruneClipError
#endif

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
    /// The largest `blockSize` accepted (wider blocks than the layer are
    /// clamped to its width; this bound only keeps scratch sizes sane).
    public static let maximumBlockSize = 1 << 16

    /// GPTQ from a precomputed Hessian `h = XᵀX` (any positive multiple: the
    /// damping is relative to its mean diagonal), row-major `cols × cols`.
    /// The weights are rounded to Float (the algorithm runs in float32, as
    /// the paper's code) and `hessian` is only read. See ``GPTQ`` for the
    /// algorithm and ``GPTQOptions`` for act-order, static groups and the
    /// MSE search.
    /// - Throws: ``SwiftPruneError`` for NaN/Inf, bad sizes or options, or a
    ///   Hessian that is not positive definite after damping.
    public static func quantize(
        weights: UnsafeBufferPointer<Double>, rows: Int, cols: Int,
        hessian: UnsafeMutableBufferPointer<Double>, scheme: QuantizationScheme, options: GPTQOptions
    ) throws -> QuantizedTensor {
        let layout = try validate(rows: rows, cols: cols, weightCount: weights.count, hessian: UnsafeBufferPointer(hessian),
                                  options: options)
        for v in weights where !v.isFinite { throw SwiftPruneError.value("weights contain NaN or Inf values") }
        let narrow = try FallibleAllocation.allocate(Float.self, count: rows * cols, "GPTQ's float32 copy of w")
        defer { FallibleAllocation.free(narrow) }
        for i in 0 ..< rows * cols { narrow[i] = Float(weights[i]) }
        return try quantizedTensor(weights: narrow, rows: rows, cols: cols, hessian: hessian.baseAddress,
                                   scheme: scheme, options: options, layout: layout)
    }

    /// As ``quantize(weights:rows:cols:hessian:scheme:options:)`` for Float weights.
    public static func quantize(
        weights: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
        hessian: UnsafeBufferPointer<Double>, scheme: QuantizationScheme, options: GPTQOptions
    ) throws -> QuantizedTensor {
        let layout = try validate(rows: rows, cols: cols, weightCount: weights.count, hessian: hessian, options: options)
        for v in weights where !v.isFinite { throw SwiftPruneError.value("weights contain NaN or Inf values") }
        return try quantizedTensor(weights: weights.baseAddress, rows: rows, cols: cols, hessian: hessian.baseAddress,
                                   scheme: scheme, options: options, layout: layout)
    }

    /// GPTQ into caller-owned outputs (the C ABI's path: no copy of the
    /// integers): `values` (rows × cols, the integers as bytes: `Int8` bit
    /// patterns when symmetric), `scales` and `zeroPoints` (rows × groups).
    /// - Throws: as ``quantize(weights:rows:cols:hessian:scheme:options:)``;
    ///   also for outputs of the wrong size.
    public static func quantize(
        weights: UnsafeBufferPointer<Float>, rows: Int, cols: Int, hessian: UnsafeBufferPointer<Double>,
        scheme: QuantizationScheme, options: GPTQOptions, values: UnsafeMutableBufferPointer<UInt8>,
        scales: UnsafeMutableBufferPointer<Float>, zeroPoints: UnsafeMutableBufferPointer<Int32>
    ) throws {
        let layout = try validate(rows: rows, cols: cols, weightCount: weights.count, hessian: hessian, options: options)
        try GPTQColumnLoop.quantize(method: "GPTQ", weights: weights, rows: rows, cols: cols, hessian: hessian,
                                    scheme: scheme, options: options, pattern: nil, layout: layout, values: values,
                                    scales: scales, zeroPoints: zeroPoints)
    }

    /// Checks sizes, options and the Hessian's values; returns the layout of the result.
    static func validate(rows: Int, cols: Int, weightCount: Int, hessian: UnsafeBufferPointer<Double>,
                         options: GPTQOptions) throws -> QuantizationLayout {
        guard rows >= 0, cols >= 0 else { throw SwiftPruneError.value("negative dimension") }
        let (wCount, o1) = rows.multipliedReportingOverflow(by: cols)
        let (hCount, o2) = cols.multipliedReportingOverflow(by: cols)
        guard !o1, !o2, weightCount == wCount, hessian.count == hCount else {
            throw SwiftPruneError.value("w must be (rows, cols) = (\(rows), \(cols)) and the Hessian (cols, cols)")
        }
        let damp = options.damp
        guard damp >= 0 && damp.isFinite else {
            throw SwiftPruneError.value("damp must be a finite number >= 0, got \(damp)")
        }
        guard options.blockSize >= 1 && options.blockSize <= maximumBlockSize else {
            throw SwiftPruneError.value("block_size must be in 1...\(maximumBlockSize), got \(options.blockSize)")
        }
        guard options.mseGrid >= 0 && options.mseGrid <= 10_000 else {
            throw SwiftPruneError.value("mse_grid must be in 0...10000, got \(options.mseGrid)")
        }
        guard options.maxShrink > 0 && options.maxShrink < 1 else {
            throw SwiftPruneError.value("max_shrink must be in (0, 1), got \(options.maxShrink)")
        }
        let layout = try QuantizationLayout(shape: [rows, cols], axis: 0, groupSize: options.groupSize)
        guard cols <= maximumColumns else {
            throw SwiftPruneError(.outOfMemory, "gptq needs three \(cols) x \(cols) matrices; at most \(maximumColumns) input columns are supported")
        }
        for v in hessian where !v.isFinite { throw SwiftPruneError.value("the Hessian contains NaN or Inf values") }
        return layout
    }

    static func quantizedTensor(
        weights: UnsafePointer<Float>?, rows: Int, cols: Int, hessian: UnsafePointer<Double>?,
        scheme: QuantizationScheme, options: GPTQOptions, layout: QuantizationLayout
    ) throws -> QuantizedTensor {
        var storage = try [UInt8](fallibleRepeating: 0, count: rows * cols, "GPTQ's integers")
        var scales = try [Float](fallibleRepeating: 1, count: layout.groupCount, "GPTQ's scales")
        var zeroPoints = try [Int32](fallibleRepeating: 0, count: layout.groupCount, "GPTQ's zero points")
        if rows > 0 && cols > 0, let weights, let hessian {
            try storage.withUnsafeMutableBufferPointer { q in
                try scales.withUnsafeMutableBufferPointer { s in
                    try zeroPoints.withUnsafeMutableBufferPointer { z in
                        try GPTQColumnLoop(weights: weights, rows: rows, cols: cols, hessian: hessian,
                                           scheme: scheme, options: options)
                            .run(values: q.baseAddress!, scales: s.baseAddress!, zeroPoints: z.baseAddress!)
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

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func parameters<T: QuantizationScalar>(_ x: UnsafePointer<T>, _ count: Int) -> (scale: Float, zeroPoint: Int32) {
        var lo = 0.0, hi = 0.0
        for c in 0 ..< count { lo = Swift.min(lo, Double(x[c])); hi = Swift.max(hi, Double(x[c])) }
        var best = scheme.parameters(lo: lo, hi: hi, as: Double.self)
        guard grid > 0 && (lo != 0 || hi != 0) else { return best }
        let steps = Int((maxShrink * Double(grid)).rounded(.down))
        #if arch(x86_64)
        if T.self == Float.self && steps > 1 {
            return x.withMemoryRebound(to: Float.self, capacity: count) {
                searchedFloat($0, count, lo: lo, hi: hi, minmax: best, steps: steps)
            }
        }
        #endif
        var bestError = error(x, count, best)
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

    #if arch(x86_64)
    /// ``parameters(_:_:)`` for Float groups: the errors of minmax and of
    /// every shrink at once by the AVX2 kernel of `SwiftPruneClipError` (one
    /// candidate per float64 lane, the operations of ``error(_:_:_:)`` in the
    /// same order, so the same sums), then the same first-strictly-smaller scan.
    func searchedFloat(_ x: UnsafePointer<Float>, _ count: Int, lo: Double, hi: Double,
                       minmax: (scale: Float, zeroPoint: Int32), steps: Int) -> (scale: Float, zeroPoint: Int32) {
        withUnsafeTemporaryAllocation(of: (scale: Float, zeroPoint: Int32).self, capacity: steps) { candidates in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * steps) { bounds in
                withUnsafeTemporaryAllocation(of: Double.self, capacity: steps) { errors in
                    let c = candidates.baseAddress!, b = bounds.baseAddress!, e = errors.baseAddress!
                    c[0] = minmax
                    for k in 1 ..< steps {
                        let p = 1 - Double(k) / Double(grid)
                        c[k] = scheme.parameters(lo: p * lo, hi: p * hi, as: Double.self)
                    }
                    for k in 0 ..< steps {
                        b[k] = c[k].scale
                        b[steps + k] = Float(scheme.qmin - c[k].zeroPoint)
                        b[2 * steps + k] = Float(scheme.qmax - c[k].zeroPoint)
                    }
                    swiftprune_clip_errors_f64_quotient(x, count, b, b + steps, b + 2 * steps, Int32(steps), e)
                    var best = minmax, bestError = e[0]
                    for k in 1 ..< steps where e[k] < bestError { (best, bestError) = (c[k], e[k]) }
                    return best
                }
            }
        }
    }
    #endif

    @inline(__always)
    func error<T: QuantizationScalar>(_ x: UnsafePointer<T>, _ count: Int, _ p: (scale: Float, zeroPoint: Int32)) -> Double {
        let scale = Double(p.scale), zero = p.zeroPoint
        let lower = Double(scheme.qmin - zero), upper = Double(scheme.qmax - zero)
        var total = 0.0
        for c in 0 ..< count {
            let v = Double(x[c])
            let t = Swift.min(Swift.max(v / scale, lower), upper)
            let d = v - Double(Float(t.roundedToInt32) * Float(scale))
            total += d * d
        }
        return total
    }
}
