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
            try perGroup(x, layout: layout, scales: &scales, zeroPoints: &zeroPoints) { group, values, length in
                let c = absolutePercentile(values, count: length, percentile: p)
                var l = Swift.max(lo[group], -c), h = Swift.min(hi[group], c)
                if c == 0 { (l, h) = (lo[group], hi[group]) }  // clipping everything to 0 would lose the group
                return scheme.parameters(lo: l, hi: h, as: S.self)
            }
        case .mse:
            try perGroup(x, layout: layout, scales: &scales, zeroPoints: &zeroPoints) { group, values, length in
                bestClipping(UnsafePointer(values), count: length, lo: lo[group], hi: hi[group], scheme: scheme)
            }
        }
        return (scales, zeroPoints)
    }

    /// Gathers the groups contiguously, then runs `body` on each group (in
    /// parallel); `body` may reorder the group's values in place.
    static func perGroup<S: QuantizationScalar>(
        _ x: UnsafeBufferPointer<S>, layout: QuantizationLayout,
        scales: inout [Float], zeroPoints: inout [Int32],
        _ body: (Int, UnsafeMutablePointer<S>, Int) -> (Float, Int32)
    ) throws {
        let total = layout.count, length = layout.groupLength, groups = layout.groupCount
        guard total > 0 && length > 0 else { return }
        let gathered = UnsafeMutableBufferPointer(start: try FallibleAllocation.allocate(S.self, count: total), count: total)
        defer { FallibleAllocation.free(gathered.baseAddress) }
        gatherGroups(x, layout: layout, into: gathered)
        let base = gathered.baseAddress!
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

    /// ``squaredError`` split over threads for a large group (one per tensor).
    static func squaredErrorParallel<S: QuantizationScalar>(
        _ values: UnsafePointer<S>, count: Int, scale: Float, zeroPoint: Int32, scheme: QuantizationScheme
    ) -> Double {
        // Below two workers' share, skip the thread-count lookup (it reads the environment):
        // the "mse" search calls this ~35 times per group.
        let workers = count < 2 << 18 ? 1 : Threading.workerCount(for: count, minimumPerWorker: 1 << 18)
        guard workers > 1 else {
            return squaredError(values, count: count, scale: scale, zeroPoint: zeroPoint, scheme: scheme)
        }
        var partial = [Double](repeating: 0, count: workers)
        partial.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            parallelFor(workers: workers) { worker in
                let range = partitionRange(count, parts: workers, index: worker)
                base[worker] = squaredError(values + range.lowerBound, count: range.count, scale: scale,
                                            zeroPoint: zeroPoint, scheme: scheme)
            }
        }
        return partial.reduce(0, +)
    }

    /// The clipping factors tried by the "mse" method: a coarse grid from 1
    /// down to 0.2, then a finer grid around the best coarse factor.
    static let coarseStep = 0.05, fineStep = 0.005

    /// The parameters of the clipping range `[alpha·lo, alpha·hi]` with the
    /// smallest reconstruction error; alpha = 1 unless strictly better
    /// (by a relative margin above the error of the summation).
    static func bestClipping<S: QuantizationScalar>(
        _ values: UnsafePointer<S>, count: Int, lo: S, hi: S, scheme: QuantizationScheme
    ) -> (Float, Int32) {
        let minmax = scheme.parameters(lo: lo, hi: hi, as: S.self)
        let reference = squaredErrorParallel(values, count: count, scale: minmax.0, zeroPoint: minmax.1, scheme: scheme)
        var best = minmax, bestError = reference, bestAlpha = 1.0
        func attempt(_ alpha: Double) {
            guard alpha > 0 && alpha < 1 else { return }
            let p = scheme.parameters(lo: S(Double(lo) * alpha), hi: S(Double(hi) * alpha), as: S.self)
            let e = squaredErrorParallel(values, count: count, scale: p.0, zeroPoint: p.1, scheme: scheme)
            if e < bestError { (best, bestError, bestAlpha) = (p, e, alpha) }
        }
        var alpha = 1 - coarseStep
        while alpha > 0.2 - 1e-9 { attempt(alpha); alpha -= coarseStep }
        let center = bestAlpha
        for step in 1 ..< 10 {
            attempt(center - Double(step) * fineStep)
            attempt(center + Double(step) * fineStep)
        }
        // Never worse than minmax, even counting the rounding of the sums.
        return bestError < reference * (1 - 1e-6) ? best : minmax
    }
}
