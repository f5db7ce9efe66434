#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import Synchronization

/// Quantize and dequantize runs for outputs too large for the caches, written
/// with non-temporal (streaming) stores.
///
/// An ordinary store first reads the destination's cache line (read for
/// ownership): dequantizing int8 into float32 then moves 1 + 4 + 4 bytes per
/// element instead of 1 + 4, and quantizing 4 + 1 + 1 instead of 4 + 1.
/// Streaming stores skip that read and do not evict the input from the
/// caches. They pay off only when the output will not be read back soon
/// from cache, so they are used above ``threshold`` bytes of output (about
/// the size of the last-level cache of a small server). Results are
/// bit-identical to the plain loops: the same operations, in vector form.
enum StreamingRuns {
    /// Outputs of at least this many bytes are streamed.
    static let threshold = 32 << 20
    /// Runs shorter than this many elements are not streamed (see dequantizeValues).
    static let minimumRun = 1024

    /// `o[i] = Float(Int32(p[i]) - zero) * s` for `count` elements; streaming
    /// stores for the 32-byte-aligned middle. Callers issue ``fence()`` once
    /// their worker is done.
    @inline(__always)
    static func dequantize<O: FixedWidthInteger & SIMDScalar>(
        _ p: UnsafePointer<O>, _ count: Int, zero: Int32, scale s: Float, into o: UnsafeMutablePointer<Float>
    ) {
        var i = 0
        @inline(__always) func scalar(_ i: Int) { o[i] = Float(Int32(truncatingIfNeeded: p[i]) &- zero) * s }
        // Up to seven leading elements until the output is 32-byte aligned.
        let misalignment = (Int(bitPattern: o) & 31) / 4
        let head = misalignment == 0 ? 0 : min(count, 8 &- misalignment)
        while i < head { scalar(i); i &+= 1 }
        #if arch(x86_64)
        if MemoryLayout<O>.size == 1 {
            // Byte codes, 32 per step: widen 8 at a time (`vpmovsxbd`/`vpmovzxbd` from memory),
            // subtract the zero point, convert (`vcvtdq2ps`: exact, every code fits 24 bits),
            // scale. All intrinsics: `SIMD16<Float>(SIMD16<Int32>)` compiled to an out-of-line
            // generic standard-library call per 16 codes (spilling every vector around it).
            let zeros = _mm256_set1_epi32(zero), scales = SIMD8<Float>(repeating: s)
            let bytes = UnsafeRawPointer(p)
            @inline(__always) func eight(_ at: Int) -> SIMD8<Float> {
                let packed = _mm_cvtsi64_si128(bytes.loadUnaligned(fromByteOffset: at, as: Int64.self))
                let wide = O.isSigned ? _mm256_cvtepi8_epi32(packed) : _mm256_cvtepu8_epi32(packed)
                return _mm256_cvtepi32_ps(_mm256_sub_epi32(wide, zeros)) * scales  // __m256 is SIMD8<Float>
            }
            while i &+ 32 <= count {
                let a = eight(i), b = eight(i &+ 8), c = eight(i &+ 16), d = eight(i &+ 24)
                _mm256_stream_ps(o + i, a)
                _mm256_stream_ps(o + (i &+ 8), b)
                _mm256_stream_ps(o + (i &+ 16), c)
                _mm256_stream_ps(o + (i &+ 24), d)
                i &+= 32
            }
            while i &+ 8 <= count {
                _mm256_stream_ps(o + i, eight(i))
                i &+= 8
            }
        } else {
            // Wider codes: as fast as byte codes per element once the caller is specialized for
            // the code type (dequantizeValues is, for Int16/UInt16/Int32); the intrinsics of the
            // byte path measured 10-20% slower here (4096 x 4096, cleanup6).
            let zeros = SIMD16<Int32>(repeating: zero), scales = SIMD16<Float>(repeating: s)
            while i &+ 16 <= count {
                let values = SIMD16<Float>(widenedCodes(p + i) &- zeros) * scales
                _mm256_stream_ps(o + i, values.lowHalf)
                _mm256_stream_ps(o + (i &+ 8), values.highHalf)
                i &+= 16
            }
        }
        #endif
        while i < count { scalar(i); i &+= 1 }
    }

    /// 16 codes from `p` as Int32. The stdlib's generic
    /// `SIMD16<Int32>(truncatingIfNeeded:)` is not specialized here and costs
    /// a call per vector (half of a grouped dequantization's time in perf);
    /// byte codes are widened with one sign- or zero-extension per 8 lanes.
    @inline(__always)
    static func widenedCodes<O: FixedWidthInteger & SIMDScalar>(_ p: UnsafePointer<O>) -> SIMD16<Int32> {
        #if arch(x86_64)
        if MemoryLayout<O>.size == 1 {
            let bytes = UnsafeRawPointer(p).loadUnaligned(as: __m128i.self)
            let upper = _mm_unpackhi_epi64(bytes, bytes)
            let low = O.isSigned ? _mm256_cvtepi8_epi32(bytes) : _mm256_cvtepu8_epi32(bytes)
            let high = O.isSigned ? _mm256_cvtepi8_epi32(upper) : _mm256_cvtepu8_epi32(upper)
            return SIMD16(lowHalf: unsafeBitCast(low, to: SIMD8<Int32>.self),
                          highHalf: unsafeBitCast(high, to: SIMD8<Int32>.self))
        }
        #endif
        var codes = SIMD16<Int32>()
        for j in 0 ..< 16 { codes[j] = Int32(truncatingIfNeeded: p[j]) }
        return codes
    }

    /// `o[i] = O(clamp(p[i] / scale, lo, hi).roundedToInt32 + zero)` for
    /// `count` float32 elements (see `quantizeRun`); streaming stores for the
    /// 32-byte-aligned middle, 32 results at a time.
    @inline(__always)
    static func quantize<O: FixedWidthInteger>(
        _ p: UnsafePointer<Float>, _ count: Int, scale: Float, lo: Float, hi: Float, zero: Int32,
        into o: UnsafeMutablePointer<O>
    ) {
        @inline(__always) func scalar(_ i: Int) {
            let t = Swift.min(Swift.max(p[i] / scale, lo), hi)
            o[i] = O(truncatingIfNeeded: t.roundedToInt32 &+ zero)
        }
        var i = 0
        let misalignment = Int(bitPattern: o) & 31
        let head = misalignment == 0 ? 0 : min(count, 32 &- misalignment)
        while i < head { scalar(i); i &+= 1 }
        #if arch(x86_64)
        let scales = SIMD8<Float>(repeating: scale), lows = SIMD8<Float>(repeating: lo), highs = SIMD8<Float>(repeating: hi)
        let magic = SIMD8<Float>(repeating: 12_582_912), zeros = SIMD8<Int32>(repeating: zero &- 0x4B40_0000)
        // Lane order after the two packs is 0 4 1 5 2 6 3 7 (in 32-bit units): put it back.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
        @inline(__always) func codes(_ at: Int) -> __m256i {
            let v = UnsafeRawPointer(p + at).loadUnaligned(as: SIMD8<Float>.self) / scales
            // The scalar min(max(v, lo), hi) with Swift's NaN-free semantics: compare and blend.
            var t = v.replacing(with: lows, where: v .< lows)
            t.replace(with: highs, where: t .> highs)
            let rounded = unsafeBitCast(t + magic, to: SIMD8<Int32>.self) &+ zeros
            return unsafeBitCast(rounded, to: __m256i.self)
        }
        while i &+ 32 <= count {
            let a = codes(i), b = codes(i &+ 8), c = codes(i &+ 16), d = codes(i &+ 24)
            // Every code fits its type, so saturation never changes a value.
            let ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d)
            let packed = O.isSigned ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd)
            _mm256_stream_si256(UnsafeMutableRawPointer(o + i).assumingMemoryBound(to: __m256i.self),
                                _mm256_permutevar8x32_epi32(packed, order))
            i &+= 32
        }
        #endif
        while i < count { scalar(i); i &+= 1 }
    }

    /// Orders the streaming stores before anything the worker does next (a
    /// sequentially consistent fence: `mfence` on x86-64, which drains the
    /// write-combining buffers as `sfence` does; clang's `_mm_sfence` is not
    /// an inline function Swift can import).
    @inline(__always)
    static func fence() {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }
}
