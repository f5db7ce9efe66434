#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// The hot loop of the one-pass (sampled) magnitude-mask writer, over
/// `count` values: writes `mask[i] = key(v[i]) > hi`, counts the keys below
/// `lo`, tracks the largest key (NaN/Inf watch) and writes into `hits`, in
/// increasing order, every `i` whose key is inside `[lo, hi]` (`hits` has
/// room for `count`). Returns the largest key, the count below and the
/// number of hits.
///
/// Float32 runs 32 keys per step in AVX2 (compares, a movemask for the rare
/// in-bracket lanes, packs for the mask bytes), so the pass moves at memory
/// speed; other types (and the tail) run the scalar loop, which gives the
/// same results.
@inline(__always)
func scanMagnitudeBracket<S: MagnitudeOrdered>(
    _ v: UnsafePointer<S>, _ count: Int, lo: S.MagnitudeKey, hi: S.MagnitudeKey, mask: UnsafeMutablePointer<Bool>,
    hits: UnsafeMutablePointer<UInt32>
) -> (worst: S.MagnitudeKey, below: Int, found: Int) {
    var start = 0
    var worst: S.MagnitudeKey = 0
    var below = 0
    var found = 0
    #if arch(x86_64)
    if S.self == Float.self {
        let (vectorWorst, vectorBelow, vectorFound, done) = scanFloatBracket(
            UnsafeRawPointer(v).assumingMemoryBound(to: Float.self), count, lo: UInt32(truncatingIfNeeded: lo),
            hi: UInt32(truncatingIfNeeded: hi), mask: mask, hits: hits)
        worst = S.MagnitudeKey(truncatingIfNeeded: vectorWorst)
        below = vectorBelow
        found = vectorFound
        start = done
    }
    #endif
    for i in start ..< count {
        let key = v[i].magnitudeKey
        worst = max(worst, key)
        mask[i] = key > hi
        if key < lo {
            below &+= 1
        } else if key <= hi {
            hits[found] = UInt32(truncatingIfNeeded: i)
            found &+= 1
        }
    }
    return (worst, below, found)
}

#if arch(x86_64)
/// The float32 keys of ``scanMagnitudeBracket`` in steps of 32; returns the
/// largest key, the count below `lo`, the hits and how many values it
/// covered (a multiple of 32; the caller finishes the rest).
@inline(__always)
private func scanFloatBracket(
    _ v: UnsafePointer<Float>, _ count: Int, lo: UInt32, hi: UInt32, mask: UnsafeMutablePointer<Bool>,
    hits: UnsafeMutablePointer<UInt32>
) -> (UInt32, Int, Int, Int) {
    // Keys have the sign bit clear, so signed 32-bit compares order them; a
    // bound above every key (hi == max) is clamped to the largest key.
    let signMask = _mm256_set1_epi32(0x7FFF_FFFF)
    let loV = _mm256_set1_epi32(Int32(bitPattern: min(lo, 0x7FFF_FFFF)))
    let hiV = _mm256_set1_epi32(Int32(bitPattern: min(hi, 0x7FFF_FFFF)))
    let ones = _mm256_set1_epi8(1)
    // Lane order after the two packs is 0 4 1 5 2 6 3 7 (in 32-bit units): put it back.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
    var worstV = _mm256_setzero_si256(), belowV = _mm256_setzero_si256()
    let aboveLo = lo > 0x7FFF_FFFF  // no key reaches lo: everything is below
    var i = 0, found = 0
    while i &+ 32 <= count {
        let raw = UnsafeRawPointer(v + i)
        let k0 = _mm256_and_si256(raw.loadUnaligned(as: __m256i.self), signMask)
        let k1 = _mm256_and_si256(raw.loadUnaligned(fromByteOffset: 32, as: __m256i.self), signMask)
        let k2 = _mm256_and_si256(raw.loadUnaligned(fromByteOffset: 64, as: __m256i.self), signMask)
        let k3 = _mm256_and_si256(raw.loadUnaligned(fromByteOffset: 96, as: __m256i.self), signMask)
        worstV = _mm256_max_epi32(worstV, _mm256_max_epi32(_mm256_max_epi32(k0, k1), _mm256_max_epi32(k2, k3)))
        let g0 = _mm256_cmpgt_epi32(k0, hiV), g1 = _mm256_cmpgt_epi32(k1, hiV)
        let g2 = _mm256_cmpgt_epi32(k2, hiV), g3 = _mm256_cmpgt_epi32(k3, hiV)
        let l0 = _mm256_cmpgt_epi32(loV, k0), l1 = _mm256_cmpgt_epi32(loV, k1)
        let l2 = _mm256_cmpgt_epi32(loV, k2), l3 = _mm256_cmpgt_epi32(loV, k3)
        belowV = _mm256_sub_epi32(_mm256_sub_epi32(belowV, _mm256_add_epi32(l0, l1)), _mm256_add_epi32(l2, l3))
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(g0, g1), _mm256_packs_epi32(g2, g3))
        UnsafeMutableRawPointer(mask + i).storeBytes(
            of: _mm256_and_si256(_mm256_permutevar8x32_epi32(packed, order), ones), as: __m256i.self)
        @inline(__always) func outside(_ g: __m256i, _ l: __m256i) -> UInt32 {
            UInt32(truncatingIfNeeded: _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(g, l))))
        }
        var inside = ~(outside(g0, l0) | outside(g1, l1) << 8 | outside(g2, l2) << 16 | outside(g3, l3) << 24)
        if aboveLo { inside = 0 }
        while inside != 0 {
            hits[found] = UInt32(truncatingIfNeeded: i &+ inside.trailingZeroBitCount)
            found &+= 1
            inside &= inside &- 1
        }
        i &+= 32
    }
    // belowV counts per lane (two pairs added before the subtraction: at most 4 per step).
    let belowLanes = unsafeBitCast(belowV, to: SIMD8<Int32>.self)
    var below = 0
    for lane in 0 ..< 8 { below &+= Int(UInt32(bitPattern: belowLanes[lane])) }
    if aboveLo { below = i }
    let worst = unsafeBitCast(worstV, to: SIMD8<UInt32>.self).max()
    return (worst, below, found, i)
}
#endif
