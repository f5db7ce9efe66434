#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

// Built for x86-64-v4 plus AVX512-VNNI (a separate module from
// SwiftPruneAVX512: with VNNI enabled, the compiler turns `vpmaddwd` + `vpaddd`
// into `vpdpwssd` on its own, which a CPU with AVX-512 but no VNNI cannot run).
// Runs only after `CPUFeatures.hasAVX512VNNI`; the same rules as SwiftPruneAVX512
// (raw pointers and SIMD only, `@inline(never)` entry points, no generic
// standard-library calls).

/// Int8 kernels using `vpdpbusd` (four u8 × s8 products summed into each
/// Int32 lane in one instruction), called by SwiftPrune after a run-time check.
public enum AVX512VNNIKernels {
    /// `QuantizedMatmul.microKernel` (see `AVX512Kernels.int8Tile4x16`), one
    /// `vpdpbusd` per row and group of four depths. Exact integer arithmetic:
    /// the activations are 7-bit, so no sum saturates on either path.
    @inline(never)
    public static func int8Tile4x16(
        _ w0: UnsafePointer<Int8>, _ w1: UnsafePointer<Int8>, _ w2: UnsafePointer<Int8>, _ w3: UnsafePointer<Int8>,
        packed: UnsafeRawPointer, quadStart: Int, quadEnd: Int, tile: UnsafeMutablePointer<Int64>
    ) {
        #if arch(x86_64)
        var a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512()
        var a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512()
        var b0 = _mm512_setzero_si512(), b1 = _mm512_setzero_si512()
        var b2 = _mm512_setzero_si512(), b3 = _mm512_setzero_si512()
        var q = quadStart
        // Two groups per trip into two sets of accumulators: two independent chains per row.
        while q &+ 1 < quadEnd {
            let x0 = (packed + q &* 64).loadUnaligned(as: __m512i.self)
            let x1 = (packed + (q &+ 1) &* 64).loadUnaligned(as: __m512i.self)
            let o = q &* 4
            a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_set1_epi32(UnsafeRawPointer(w0 + o).loadUnaligned(as: Int32.self)))
            a1 = _mm512_dpbusd_epi32(a1, x0, _mm512_set1_epi32(UnsafeRawPointer(w1 + o).loadUnaligned(as: Int32.self)))
            a2 = _mm512_dpbusd_epi32(a2, x0, _mm512_set1_epi32(UnsafeRawPointer(w2 + o).loadUnaligned(as: Int32.self)))
            a3 = _mm512_dpbusd_epi32(a3, x0, _mm512_set1_epi32(UnsafeRawPointer(w3 + o).loadUnaligned(as: Int32.self)))
            b0 = _mm512_dpbusd_epi32(b0, x1, _mm512_set1_epi32(UnsafeRawPointer(w0 + (o &+ 4)).loadUnaligned(as: Int32.self)))
            b1 = _mm512_dpbusd_epi32(b1, x1, _mm512_set1_epi32(UnsafeRawPointer(w1 + (o &+ 4)).loadUnaligned(as: Int32.self)))
            b2 = _mm512_dpbusd_epi32(b2, x1, _mm512_set1_epi32(UnsafeRawPointer(w2 + (o &+ 4)).loadUnaligned(as: Int32.self)))
            b3 = _mm512_dpbusd_epi32(b3, x1, _mm512_set1_epi32(UnsafeRawPointer(w3 + (o &+ 4)).loadUnaligned(as: Int32.self)))
            q &+= 2
        }
        if q < quadEnd {
            let x0 = (packed + q &* 64).loadUnaligned(as: __m512i.self)
            let o = q &* 4
            a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_set1_epi32(UnsafeRawPointer(w0 + o).loadUnaligned(as: Int32.self)))
            a1 = _mm512_dpbusd_epi32(a1, x0, _mm512_set1_epi32(UnsafeRawPointer(w1 + o).loadUnaligned(as: Int32.self)))
            a2 = _mm512_dpbusd_epi32(a2, x0, _mm512_set1_epi32(UnsafeRawPointer(w2 + o).loadUnaligned(as: Int32.self)))
            a3 = _mm512_dpbusd_epi32(a3, x0, _mm512_set1_epi32(UnsafeRawPointer(w3 + o).loadUnaligned(as: Int32.self)))
        }
        // Int32 lanes hold the sum: a chunk is at most 16384 groups, 16384 · 4 · 128 · 127 < 2^31.
        addLanes(_mm512_add_epi32(a0, b0), tile)
        addLanes(_mm512_add_epi32(a1, b1), tile + 16)
        addLanes(_mm512_add_epi32(a2, b2), tile + 32)
        addLanes(_mm512_add_epi32(a3, b3), tile + 48)
        #endif
    }
}

#if arch(x86_64)
/// The sixteen Int32 lanes of `v`, widened and added into `out[0 ..< 16]`.
@inline(__always)
private func addLanes(_ v: __m512i, _ out: UnsafeMutablePointer<Int64>) {
    let halves = unsafeBitCast(v, to: (__m256i, __m256i).self)
    let low = _mm512_cvtepi32_epi64(halves.0), high = _mm512_cvtepi32_epi64(halves.1)
    let p = UnsafeMutableRawPointer(out)
    p.storeBytes(of: _mm512_add_epi64(p.loadUnaligned(as: __m512i.self), low), as: __m512i.self)
    p.storeBytes(of: _mm512_add_epi64(p.loadUnaligned(fromByteOffset: 64, as: __m512i.self), high),
                 toByteOffset: 64, as: __m512i.self)
}
#endif
