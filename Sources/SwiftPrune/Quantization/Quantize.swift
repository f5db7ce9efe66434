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
    var divisors = [S](repeating: 1, count: groups)
    var lower = [S](repeating: 0, count: groups), upper = [S](repeating: 0, count: groups)
    for g in 0 ..< groups {
        guard scales[g] > 0 && scales[g].isFinite else {
            throw SwiftPruneError.value("scale \(scales[g]) of group \(g) is not a positive finite number")
        }
        divisors[g] = S(scales[g])
        lower[g] = S(scheme.qmin - zeroPoints[g])
        upper[g] = S(scheme.qmax - zeroPoints[g])
    }
    let src = x.baseAddress!, dst = out.baseAddress!
    let workers = Threading.workerCount(for: total, minimumPerWorker: GroupWalk.minimumPerWorker)
    divisors.withUnsafeBufferPointer { dv in
        lower.withUnsafeBufferPointer { lw in
            upper.withUnsafeBufferPointer { up in
                zeroPoints.withUnsafeBufferPointer { zp in
                    let d = dv.baseAddress!, l = lw.baseAddress!, u = up.baseAddress!, z = zp.baseAddress!
                    parallelFor(workers: workers) { worker in
                        GroupWalk.forEachStretch(layout, partitionRange(total, parts: workers, index: worker)) { start, count, group in
                            let p = src + start, o = dst + start
                            if layout.inner == 1 {
                                let s = d[group], lo = l[group], hi = u[group], zero = z[group]
                                for i in 0 ..< count {
                                    let t = Swift.min(Swift.max(p[i] / s, lo), hi)
                                    o[i] = O(truncatingIfNeeded: t.roundedToInt32 &+ zero)
                                }
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
public func dequantizeValues<O: FixedWidthInteger>(
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
    let workers = Threading.workerCount(for: total, minimumPerWorker: GroupWalk.minimumPerWorker)
    parallelFor(workers: workers) { worker in
        GroupWalk.forEachStretch(layout, partitionRange(total, parts: workers, index: worker)) { start, count, group in
            let p = src + start, o = dst + start
            if layout.inner == 1 {
                let s = sc[group], zero = zp[group]
                for i in 0 ..< count { o[i] = Float(Int32(truncatingIfNeeded: p[i]) &- zero) * s }
            } else {
                let s = sc + group, zero = zp + group
                for i in 0 ..< count { o[i] = Float(Int32(truncatingIfNeeded: p[i]) &- zero[i]) * s[i] }
            }
        }
    }
}
