#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// A keep-mask applied to float32 weights as `w * keep + 0`: the pruned
/// entries become +0.0 and a kept -0.0 becomes +0.0 too (the `+ 0`), so
/// stored tensors never carry negative zeros. The same two operations as
/// NumPy's `np.multiply(w, mask, dtype=float32); out += 0`, lane by lane, so
/// the result is bit-identical (NaN * 0 stays NaN), in one pass instead of
/// NumPy's cast, multiply and add.
public enum MaskApplication {
    /// Writes `w[i] * (keep[i] != 0 ? 1 : 0) + 0` into `out` (may be `w`).
    /// - Throws: ``SwiftPruneError`` when the buffers differ in length.
    public static func apply(
        _ w: UnsafeBufferPointer<Float>, keep: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<Float>
    ) throws {
        guard w.count == keep.count, out.count == w.count else {
            throw SwiftPruneError.value("weights (\(w.count)), mask (\(keep.count)) and output (\(out.count)) differ in length")
        }
        let count = w.count
        guard count > 0 else { return }
        let x = w.baseAddress!, k = keep.baseAddress!, o = out.baseAddress!
        let workers = Threading.workerCount(for: count, minimumPerWorker: 1 << 20)
        parallelFor(workers: workers) { worker in
            let range = partitionRange(count, parts: workers, index: worker)
            var i = range.lowerBound
            #if arch(x86_64)
            while i + 8 <= range.upperBound {
                // 8 flags to 0/1 floats (any non-zero byte counts as kept).
                let flags = _mm_loadl_epi64(UnsafeRawPointer(k + i).assumingMemoryBound(to: __m128i.self))
                let kept = _mm_cmpeq_epi8(flags, _mm_setzero_si128())  // 0xFF where pruned
                let ones = _mm256_cvtepi32_ps(_mm256_andnot_si256(_mm256_cvtepi8_epi32(kept), _mm256_set1_epi32(1)))
                let product = SIMD8<Float>(unsafeBitCast(ones, to: SIMD8<Float>.self)) * UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(o + i).storeBytes(of: product + SIMD8<Float>(repeating: 0), as: SIMD8<Float>.self)
                i += 8
            }
            #endif
            while i < range.upperBound {
                o[i] = x[i] * (k[i] != 0 ? 1 : 0) + 0
                i += 1
            }
        }
    }
}
