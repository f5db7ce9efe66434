#if arch(x86_64)
import SwiftPruneClipError
#endif

/// Scales and zero points of every group of a tensor, by calibration method.
public enum QuantizationCalibration {
    /// The scale and zero point of each group of `x` (see
    /// ``QuantizationScheme/parameters(lo:hi:as:)`` for the formulas).
    /// - Throws: ``SwiftPruneError`` on NaN/Inf in `x`, a percentile outside
    ///   [0, 100], or a buffer that does not match `layout`.
    @_specialize(where S == Float)
    @_specialize(where S == Double)
    public static func parameters<S: QuantizationScalar>(
        _ x: UnsafeBufferPointer<S>, layout: QuantizationLayout, scheme: QuantizationScheme, method: CalibrationMethod
    ) throws -> (scales: [Float], zeroPoints: [Int32]) {
        if case .percentile(let p) = method {
            guard p >= 0 && p <= 100 else {
                throw SwiftPruneError.value("percentile must be in [0, 100], got \(p)")
            }
        }
        let (lo, hi) = try groupRanges(x, layout: layout)
        let groups = layout.groupCount
        var scales = try [Float](fallibleRepeating: 1, count: groups)
        var zeroPoints = try [Int32](fallibleRepeating: 0, count: groups)
        switch method {
        case .minmax:
            for g in 0 ..< groups {
                (scales[g], zeroPoints[g]) = scheme.parameters(lo: lo[g], hi: hi[g], as: S.self)
            }
        case .percentile(let p):
            try perGroup(x, layout: layout, scales: &scales, zeroPoints: &zeroPoints, reorders: true) { group, values, length in
                let c = absolutePercentile(values, count: length, percentile: p)
                var l = Swift.max(lo[group], -c), h = Swift.min(hi[group], c)
                if c == 0 { (l, h) = (lo[group], hi[group]) }  // clipping everything to 0 would lose the group
                return scheme.parameters(lo: l, hi: h, as: S.self)
            }
        case .mse:
            try perGroup(x, layout: layout, scales: &scales, zeroPoints: &zeroPoints, reorders: false) { group, values, length in
                bestClipping(UnsafePointer(values), count: length, lo: lo[group], hi: hi[group], scheme: scheme)
            }
        }
        return (scales, zeroPoints)
    }

    /// Runs `body` on each group, stored contiguously (in parallel): in place
    /// when the groups already are contiguous runs of `x` and `body` only
    /// reads them, else on a gathered copy (`reorders`: `body` may reorder
    /// the group's values in place).
    static func perGroup<S: QuantizationScalar>(
        _ x: UnsafeBufferPointer<S>, layout: QuantizationLayout,
        scales: inout [Float], zeroPoints: inout [Int32], reorders: Bool,
        _ body: (Int, UnsafeMutablePointer<S>, Int) -> (Float, Int32)
    ) throws {
        let total = layout.count, length = layout.groupLength, groups = layout.groupCount
        guard total > 0 && length > 0 else { return }
        let inPlace = !reorders && layout.outer == 1 && layout.inner == 1 && layout.run == length
        let gathered = inPlace ? nil : try FallibleAllocation.allocate(S.self, count: total)
        defer { if let gathered { FallibleAllocation.free(gathered) } }
        if let gathered { gatherGroups(x, layout: layout, into: UnsafeMutableBufferPointer(start: gathered, count: total)) }
        // In place, `body` reads through the mutable pointer only (`reorders` is false).
        let base = gathered ?? UnsafeMutablePointer(mutating: x.baseAddress!)
        let workers = Threading.workerCount(for: total, minimumPerWorker: 1 << 14)
        let w = Swift.min(workers, groups)
        scales.withUnsafeMutableBufferPointer { s in
            zeroPoints.withUnsafeMutableBufferPointer { z in
                let sBase = s.baseAddress!, zBase = z.baseAddress!
                parallelFor(workers: w) { worker in
                    for g in partitionRange(groups, parts: w, index: worker) {
                        (sBase[g], zBase[g]) = body(g, base + g * length, length)
                    }
                }
            }
        }
    }

    /// NumPy's `np.percentile(|v|, p)` ("linear" method) of `count` values,
    /// reordering `values` in place. Expected O(count).
    static func absolutePercentile<S: QuantizationScalar>(
        _ values: UnsafeMutablePointer<S>, count: Int, percentile: Double
    ) -> S {
        for i in 0 ..< count { values[i] = Swift.abs(values[i]) }
        let position = percentile / 100 * Double(count - 1)
        let below = Swift.min(count - 1, Int(position.rounded(.down)))
        let t = position - Double(below)
        selectNth(values, count: count, k: below)
        let a = Double(values[below])
        guard below + 1 < count && t > 0 else { return S(a) }
        var b = values[below + 1]
        for i in (below + 2) ..< count { b = Swift.min(b, values[i]) }
        let diff = Double(b) - a
        // NumPy's lerp: from the nearer end.
        return S(t >= 0.5 ? Double(b) - diff * (1 - t) : a + diff * t)
    }

    /// Reorders `values[0..<count]` so that `values[k]` is the k-th smallest,
    /// smaller-or-equal values before it, larger-or-equal after (quickselect,
    /// median-of-three pivots, Hoare partition).
    static func selectNth<S: QuantizationScalar>(_ values: UnsafeMutablePointer<S>, count: Int, k: Int) {
        var left = 0, right = count - 1
        while right > left {
            let mid = left + (right - left) / 2
            if values[mid] < values[left] { swap(values, mid, left) }
            if values[right] < values[left] { swap(values, right, left) }
            if values[right] < values[mid] { swap(values, right, mid) }
            let pivot = values[mid]
            var i = left, j = right
            while i <= j {
                while values[i] < pivot { i += 1 }
                while pivot < values[j] { j -= 1 }
                if i <= j {
                    swap(values, i, j)
                    i += 1
                    j -= 1
                }
            }
            if k <= j {
                right = j
            } else if k >= i {
                left = i
            } else {
                return
            }
        }
    }

    @inline(__always)
    static func swap<S>(_ p: UnsafeMutablePointer<S>, _ i: Int, _ j: Int) {
        let t = p[i]; p[i] = p[j]; p[j] = t
    }

    /// The squared reconstruction error of `count` values quantized with
    /// (`scale`, `zeroPoint`), each reconstructed as ``dequantize`` does.
    @inline(__always)
    static func squaredError<S: QuantizationScalar>(
        _ values: UnsafePointer<S>, count: Int, scale: Float, zeroPoint: Int32, scheme: QuantizationScheme
    ) -> Double {
        if S.self == Float.self {
            return values.withMemoryRebound(to: Float.self, capacity: count) {
                squaredErrorFloat($0, count: count, scale: scale, zeroPoint: zeroPoint, scheme: scheme)
            }
        }
        let s = S(scale)
        let tLo = S(scheme.qmin - zeroPoint), tHi = S(scheme.qmax - zeroPoint)
        var sums = SIMD4<Double>(repeating: 0)
        var i = 0
        while i + 4 <= count {
            var e = SIMD4<Double>(repeating: 0)
            for lane in 0 ..< 4 {
                let v = values[i + lane]
                let q = Swift.min(Swift.max(v / s, tLo), tHi).roundedToInt32
                e[lane] = Double(v) - Double(Float(q) * scale)
            }
            sums += e * e
            i += 4
        }
        var total = sums.sum()
        while i < count {
            let v = values[i]
            let q = Swift.min(Swift.max(v / s, tLo), tHi).roundedToInt32
            let e = Double(v) - Double(Float(q) * scale)
            total += e * e
            i += 1
        }
        return total
    }

    /// ``squaredError`` for Float values, eight lanes at a time: the same
    /// quotient, clamp and round half to even (`(t + 1.5·2²³) − 1.5·2²³`, exact
    /// for the clamped `|t| < 2²²`) and the same Float reconstruction
    /// `q · scale`; differences squared and summed in Double.
    @inline(__always)
    static func squaredErrorFloat(
        _ values: UnsafePointer<Float>, count: Int, scale: Float, zeroPoint: Int32, scheme: QuantizationScheme
    ) -> Double {
        typealias V = SIMD8<Float>
        let s = V(repeating: scale)
        let lower = V(repeating: Float(scheme.qmin - zeroPoint)), upper = V(repeating: Float(scheme.qmax - zeroPoint))
        let magic = V(repeating: 12_582_912)
        var low = SIMD4<Double>(repeating: 0), high = SIMD4<Double>(repeating: 0)
        let raw = UnsafeRawPointer(values)
        var i = 0
        while i + 8 <= count {
            let x = raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            // Clamped by selects: `clamped(lowerBound:upperBound:)` compiles to out-of-line generic
            // pointwiseMin/Max calls (70% of an "mse" quantization's time); same values for the
            // quotient, which is never NaN (finite values, nonzero scale).
            var t = x / s
            t.replace(with: lower, where: t .< lower)
            t.replace(with: upper, where: t .> upper)
            let r = (t + magic) - magic
            let e = x - r * s
            let a = SIMD4<Double>(Double(e[0]), Double(e[1]), Double(e[2]), Double(e[3]))
            let b = SIMD4<Double>(Double(e[4]), Double(e[5]), Double(e[6]), Double(e[7]))
            low.addProduct(a, a)
            high.addProduct(b, b)
            i += 8
        }
        var total = (low + high).sum()
        while i < count {
            let v = values[i]
            let q = Swift.min(Swift.max(v / scale, Float(scheme.qmin - zeroPoint)), Float(scheme.qmax - zeroPoint)).roundedToInt32
            let e = Double(v) - Double(Float(q) * scale)
            total += e * e
            i += 1
        }
        return total
    }

    /// The squared errors of `count` values (none larger in magnitude than
    /// `maxMagnitude`) under `n` candidates (`scales[k]`, `zeroPoints[k]`),
    /// written to `errors`: for each, exactly the value ``squaredError``
    /// returns. Float groups go through the AVX2 kernel of
    /// `SwiftPruneClipError`, which reads each block of 8 values once for two
    /// candidates, divides without a division instruction (exactly) and keeps
    /// ``squaredErrorFloat``'s float64 sums (same lanes, same order), so the
    /// errors are bit-identical.
    static func squaredErrors<S: QuantizationScalar>(
        _ values: UnsafePointer<S>, count: Int, maxMagnitude: Double, scales: UnsafePointer<Float>,
        zeroPoints: UnsafePointer<Int32>, n: Int, scheme: QuantizationScheme, into errors: UnsafeMutablePointer<Double>
    ) {
        #if arch(x86_64)
        // The scales are admitted when the extreme ones are (the kernel's exactness bounds are an interval).
        var smallest = Float.infinity, largest: Float = 0
        for k in 0 ..< n { smallest = Swift.min(smallest, scales[k]); largest = Swift.max(largest, scales[k]) }
        if S.self == Float.self && count >= 8 && n > 0 && kernelAdmits(scale: smallest, maxMagnitude: maxMagnitude)
            && kernelAdmits(scale: largest, maxMagnitude: 0) {
            values.withMemoryRebound(to: Float.self, capacity: count) { v in
                swiftprune_clip_errors_f32(v, count, scales, zeroPoints, scheme.qmin, scheme.qmax, Int32(n), errors)
                // The scalar tail of squaredErrorFloat.
                for k in 0 ..< n where count & 7 != 0 {
                    let scale = scales[k]
                    let tLo = Float(scheme.qmin - zeroPoints[k]), tHi = Float(scheme.qmax - zeroPoints[k])
                    var total = errors[k]
                    for i in (count & ~7) ..< count {
                        let q = Swift.min(Swift.max(v[i] / scale, tLo), tHi).roundedToInt32
                        let e = Double(v[i]) - Double(Float(q) * scale)
                        total += e * e
                    }
                    errors[k] = total
                }
            }
            return
        }
        #endif
        for k in 0 ..< n {
            errors[k] = squaredError(values, count: count, scale: scales[k], zeroPoint: zeroPoints[k], scheme: scheme)
        }
    }

    #if arch(x86_64)
    /// Whether the kernel's division-free quotient is exact for `scale` and
    /// values up to `maxMagnitude` (see `swiftprune_clip_errors_f32`): real
    /// weights always are; a degenerate group (scales below 2⁻⁶⁴, e.g. of
    /// subnormal values) takes ``squaredErrorFloat``.
    @inline(__always)
    static func kernelAdmits(scale: Float, maxMagnitude: Double) -> Bool {
        let s = Double(scale)
        return s >= 0x1p-64 && s <= 0x1p64 && maxMagnitude < s * 0x1p100
    }
    #endif

    /// ``squaredErrors`` split over threads for a large group (one per
    /// tensor): each candidate's error is the sum, in worker order, of
    /// ``squaredError`` over the same ranges as before batching.
    static func squaredErrorsParallel<S: QuantizationScalar>(
        _ values: UnsafePointer<S>, count: Int, maxMagnitude: Double, scales: UnsafePointer<Float>,
        zeroPoints: UnsafePointer<Int32>, n: Int, scheme: QuantizationScheme, into errors: UnsafeMutablePointer<Double>
    ) {
        // Below two workers' share, skip the thread-count lookup (it reads the environment).
        let workers = count < 2 << 18 ? 1 : Threading.workerCount(for: count, minimumPerWorker: 1 << 18)
        guard workers > 1 else {
            squaredErrors(values, count: count, maxMagnitude: maxMagnitude, scales: scales, zeroPoints: zeroPoints,
                          n: n, scheme: scheme, into: errors)
            return
        }
        var partial = [Double](repeating: 0, count: workers * n)
        partial.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            parallelFor(workers: workers) { worker in
                let range = partitionRange(count, parts: workers, index: worker)
                squaredErrors(values + range.lowerBound, count: range.count, maxMagnitude: maxMagnitude, scales: scales,
                              zeroPoints: zeroPoints, n: n, scheme: scheme, into: base + worker * n)
            }
        }
        for k in 0 ..< n {
            var total = 0.0
            for worker in 0 ..< workers { total += partial[worker * n + k] }
            errors[k] = total
        }
    }

    /// The clipping factors tried by the "mse" method: a coarse grid from 1
    /// down to 0.2, then a finer grid around the best coarse factor.
    static let coarseStep = 0.05, fineStep = 0.005

    /// The parameters of the clipping range `[alpha·lo, alpha·hi]` with the
    /// smallest reconstruction error; alpha = 1 unless strictly better
    /// (by a relative margin above the error of the summation).
    ///
    /// The candidates of each stage (minmax and the coarse grid, then the
    /// fine grid) are evaluated together by ``squaredErrorsParallel`` and
    /// compared in the order of the grid, first strictly smaller error wins.
    static func bestClipping<S: QuantizationScalar>(
        _ values: UnsafePointer<S>, count: Int, lo: S, hi: S, scheme: QuantizationScheme
    ) -> (Float, Int32) {
        let minmax = scheme.parameters(lo: lo, hi: hi, as: S.self)
        let maxMagnitude = Swift.max(Swift.abs(Double(lo)), Swift.abs(Double(hi)))
        // 1 + 16 coarse factors, then 18 fine ones: 20 slots hold either stage
        // (scales, zero points, errors and factors side by side, one allocation).
        return withUnsafeTemporaryAllocation(byteCount: 480, alignment: 16) { scratch in
            let raw = scratch.baseAddress!
            let e = raw.bindMemory(to: Double.self, capacity: 40), a = e + 20
            let s = (raw + 320).bindMemory(to: Float.self, capacity: 20)
            let z = (raw + 400).bindMemory(to: Int32.self, capacity: 20)
            func add(_ alpha: Double, at n: Int) {
                (s[n], z[n]) = scheme.parameters(lo: S(Double(lo) * alpha), hi: S(Double(hi) * alpha), as: S.self)
                a[n] = alpha
            }
            func evaluate(_ n: Int) {
                squaredErrorsParallel(values, count: count, maxMagnitude: maxMagnitude, scales: s, zeroPoints: z, n: n,
                                      scheme: scheme, into: e)
            }
            // Stage 1: minmax, then alpha = 0.95, 0.90, ... down to 0.2 (the same repeated subtraction).
            (s[0], z[0]) = minmax
            a[0] = 1
            var n = 1
            var alpha = 1 - coarseStep
            while alpha > 0.2 - 1e-9 {
                if alpha > 0 && alpha < 1 { add(alpha, at: n); n += 1 }
                alpha -= coarseStep
            }
            evaluate(n)
            let reference = e[0]
            var best = minmax, bestError = reference, bestAlpha = 1.0
            for k in 1 ..< n where e[k] < bestError { (best, bestError, bestAlpha) = ((s[k], z[k]), e[k], a[k]) }
            // Stage 2: center - fineStep, center + fineStep, center - 2·fineStep, ... (9 steps each side).
            let center = bestAlpha
            n = 0
            for j in 0 ..< 18 {
                let step = Double(j / 2 + 1)
                let candidate = j % 2 == 0 ? center - step * fineStep : center + step * fineStep
                if candidate > 0 && candidate < 1 { add(candidate, at: n); n += 1 }
            }
            evaluate(n)
            for k in 0 ..< n where e[k] < bestError { (best, bestError) = ((s[k], z[k]), e[k]) }
            // Never worse than minmax, even counting the rounding of the sums.
            return bestError < reference * (1 - 1e-6) ? best : minmax
        }
    }
}
