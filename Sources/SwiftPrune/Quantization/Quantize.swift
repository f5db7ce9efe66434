/// `out[i] = clamp(round_half_even(x[i] / scale) + zero)` for one group
/// stored contiguously; `lo`/`hi` are the grid bounds minus `zero`.
@_specialize(where S == Float, O == Int8)
@_specialize(where S == Float, O == UInt8)
@_specialize(where S == Double, O == Int8)
@_specialize(where S == Double, O == UInt8)
@inline(never)
func quantizeRun<S: QuantizationScalar, O: FixedWidthInteger>(
    _ p: UnsafePointer<S>, _ count: Int, _ scale: S, _ lo: S, _ hi: S, _ zero: Int32, into o: UnsafeMutablePointer<O>
) {
    for i in 0 ..< count {
        let t = Swift.min(Swift.max(p[i] / scale, lo), hi)
        o[i] = O(truncatingIfNeeded: t.roundedToInt32 &+ zero)
    }
}

/// Calibrates and quantizes `x` into `out` (see ``quantizeValues``), and
/// returns the scales and zero points. With minmax calibration and groups
/// that are contiguous runs (per channel along axis 0, groups along the last
/// dimension), each group is reduced and quantized while it is in cache: one
/// pass over memory instead of two.
/// - Throws: ``SwiftPruneError`` as ``QuantizationCalibration/parameters(_:layout:scheme:method:)``.
@_specialize(where S == Float, O == Int8)
@_specialize(where S == Float, O == UInt8)
@_specialize(where S == Double, O == Int8)
@_specialize(where S == Double, O == UInt8)
public func quantizeBuffer<S: QuantizationScalar, O: FixedWidthInteger>(
    _ x: UnsafeBufferPointer<S>, layout: QuantizationLayout, scheme: QuantizationScheme, method: CalibrationMethod,
    into out: UnsafeMutableBufferPointer<O>
) throws -> (scales: [Float], zeroPoints: [Int32]) {
    let total = layout.count, groups = layout.groupCount, run = layout.run
    guard x.count == total, out.count == total else {
        throw SwiftPruneError.value("quantization buffers do not match shape \(layout.shape)")
    }
    let runBytes = run * MemoryLayout<S>.stride
    guard method == .minmax, layout.outer == 1, layout.inner == 1, groups > 1, run > 0, runBytes <= 1 << 19 else {
        let (scales, zeroPoints) = try QuantizationCalibration.parameters(x, layout: layout, scheme: scheme, method: method)
        try quantizeValues(x, layout: layout, scheme: scheme, scales: scales, zeroPoints: zeroPoints, into: out)
        return (scales, zeroPoints)
    }
    var scales = try [Float](fallibleRepeating: 1, count: groups)
    var zeroPoints = try [Int32](fallibleRepeating: 0, count: groups)
    let workers = Swift.min(groups, Threading.workerCount(for: total, minimumPerWorker: QuantizationGroupWalk.minimumPerWorker))
    var bad = [Bool](repeating: false, count: workers)
    let src = x.baseAddress!, dst = out.baseAddress!
    let stream = S.self == Float.self && total * MemoryLayout<O>.stride >= StreamingRuns.threshold
    scales.withUnsafeMutableBufferPointer { sb in
        zeroPoints.withUnsafeMutableBufferPointer { zb in
            bad.withUnsafeMutableBufferPointer { bb in
                let sBase = sb.baseAddress!, zBase = zb.baseAddress!, bBase = bb.baseAddress!
                parallelFor(workers: workers) { worker in
                    var nonFinite = false
                    for g in partitionRange(groups, parts: workers, index: worker) {
                        let p = src + g * run
                        let (lo, hi, check) = quantizationRangeOfRun(p, run, .greatestFiniteMagnitude, -.greatestFiniteMagnitude)
                        if !(check == 0) { nonFinite = true; continue }
                        let (scale, zero) = scheme.parameters(lo: lo, hi: hi, as: S.self)
                        sBase[g] = scale
                        zBase[g] = zero
                        if stream {
                            // S == Float (checked with `stream`).
                            StreamingRuns.quantize(UnsafeRawPointer(p).assumingMemoryBound(to: Float.self), run,
                                                   scale: scale, lo: Float(scheme.qmin - zero), hi: Float(scheme.qmax - zero),
                                                   zero: zero, into: dst + g * run)
                        } else {
                            quantizeRun(p, run, S(scale), S(scheme.qmin - zero), S(scheme.qmax - zero), zero, into: dst + g * run)
                        }
                    }
                    if stream { StreamingRuns.fence() }
                    bBase[worker] = nonFinite
                }
            }
        }
    }
    if bad.contains(true) { throw SwiftPruneError.value("weights contain NaN or Inf values") }
    return (scales, zeroPoints)
}

/// Writes `clamp(round_half_even(x / scale) + zeroPoint, qmin, qmax)` for
/// every element of `x` into `out`, with the scale and zero point of its
/// group under `layout`. The division is done in `S` on the `Float` scale,
/// exactly as `np.round(w / scale)` does it.
///
/// `O` is `Int8` for a symmetric scheme and `UInt8` for an affine one.
/// - Throws: ``SwiftPruneError`` if a buffer does not match `layout`.
@_specialize(where S == Float, O == Int8)
@_specialize(where S == Float, O == UInt8)
@_specialize(where S == Double, O == Int8)
@_specialize(where S == Double, O == UInt8)
public func quantizeValues<S: QuantizationScalar, O: FixedWidthInteger>(
    _ x: UnsafeBufferPointer<S>, layout: QuantizationLayout, scheme: QuantizationScheme,
    scales: [Float], zeroPoints: [Int32], into out: UnsafeMutableBufferPointer<O>
) throws {
    let total = layout.count, groups = layout.groupCount
    guard x.count == total, out.count == total, scales.count == groups, zeroPoints.count == groups else {
        throw SwiftPruneError.value("quantization buffers do not match shape \(layout.shape)")
    }
    guard total > 0 else { return }
    var divisors = try [S](fallibleRepeating: 1, count: groups)
    var lower = try [S](fallibleRepeating: 0, count: groups), upper = try [S](fallibleRepeating: 0, count: groups)
    for g in 0 ..< groups {
        guard scales[g] > 0 && scales[g].isFinite else {
            throw SwiftPruneError.value("scale \(scales[g]) of group \(g) is not a positive finite number")
        }
        divisors[g] = S(scales[g])
        lower[g] = S(scheme.qmin - zeroPoints[g])
        upper[g] = S(scheme.qmax - zeroPoints[g])
    }
    let src = x.baseAddress!, dst = out.baseAddress!
    let workers = Threading.workerCount(for: total, minimumPerWorker: QuantizationGroupWalk.minimumPerWorker)
    divisors.withUnsafeBufferPointer { dv in
        lower.withUnsafeBufferPointer { lw in
            upper.withUnsafeBufferPointer { up in
                zeroPoints.withUnsafeBufferPointer { zp in
                    let d = dv.baseAddress!, l = lw.baseAddress!, u = up.baseAddress!, z = zp.baseAddress!
                    QuantizationGroupWalk.forEachChunk(total: total, workers: workers) { chunk in
                        QuantizationGroupWalk.forEachStretch(layout, chunk) { start, count, group in
                            let p = src + start, o = dst + start
                            if layout.inner == 1 {
                                quantizeRun(p, count, d[group], l[group], u[group], z[group], into: o)
                            } else {
                                let s = d + group, lo = l + group, hi = u + group, zero = z + group
                                for i in 0 ..< count {
                                    let t = Swift.min(Swift.max(p[i] / s[i], lo[i]), hi[i])
                                    o[i] = O(truncatingIfNeeded: t.roundedToInt32 &+ zero[i])
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Writes `(q - zeroPoint) * scale` (in `Float`) for every element of
/// `values` into `out`, with the parameters of its group under `layout`.
/// - Throws: ``SwiftPruneError`` if a buffer does not match `layout`.
@_specialize(where O == Int8)
@_specialize(where O == UInt8)
@_specialize(where O == Int16)  // wider codes (Swift callers only): the generic body was 15-20x slower
@_specialize(where O == UInt16)
@_specialize(where O == Int32)
public func dequantizeValues<O: FixedWidthInteger & SIMDScalar>(
    _ values: UnsafeBufferPointer<O>, layout: QuantizationLayout,
    scales: UnsafeBufferPointer<Float>, zeroPoints: UnsafeBufferPointer<Int32>,
    into out: UnsafeMutableBufferPointer<Float>
) throws {
    let total = layout.count, groups = layout.groupCount
    guard values.count == total, out.count == total, scales.count == groups, zeroPoints.count == groups else {
        throw SwiftPruneError.value("dequantization buffers do not match shape \(layout.shape)")
    }
    guard total > 0 else { return }
    let src = values.baseAddress!, dst = out.baseAddress!
    let sc = scales.baseAddress!, zp = zeroPoints.baseAddress!
    // One worker for small outputs, where a second did not shorten the call (MemoryBoundWorkers).
    let workers = MemoryBoundWorkers.count(size: total, threshold: MemoryBoundWorkers.dequantizeElements, work: total,
                                           minimumPerWorker: QuantizationGroupWalk.minimumPerWorker)
    let stream = total * MemoryLayout<Float>.stride >= StreamingRuns.threshold
    QuantizationGroupWalk.forEachChunk(total: total, workers: workers) { chunk in
        defer { if stream { StreamingRuns.fence() } }
        QuantizationGroupWalk.forEachStretch(layout, chunk) { start, count, group in
            let p = src + start, o = dst + start
            if layout.inner == 1 {
                let s = sc[group], zero = zp[group]
                // Short runs (groups of 32..512) are written plainly: each would
                // start and end with scalar stores next to the streamed lines of
                // its neighbours, which costs more than the streaming saves
                // (4x slower for groups of 128 on an output 16-byte aligned).
                if stream && count >= StreamingRuns.minimumRun {
                    StreamingRuns.dequantize(p, count, zero: zero, scale: s, into: o)
                } else {
                    for i in 0 ..< count { o[i] = Float(Int32(truncatingIfNeeded: p[i]) &- zero) * s }
                }
            } else {
                let s = sc + group, zero = zp + group
                for i in 0 ..< count { o[i] = Float(Int32(truncatingIfNeeded: p[i]) &- zero[i]) * s[i] }
            }
        }
    }
}
