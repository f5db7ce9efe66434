#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// Adds the L1 or squared-L2 contributions of `rows` float32 planes into a
/// float64 accumulator: `acc[j] += f(p[r * plane + j])` for `r` in
/// `0..<rows` (in that order) and `j` in `0..<plane`, with `f = |x|` (l1) or
/// `x²` (l2). This is the short-row branch of ``sliceNorms(_:axis:norm:)``
/// (e.g. the column norms of a matrix, axis 1).
///
/// The plain loop loads, converts, adds and stores `acc[j]` once per plane:
/// the float64 read-modify-write of the accumulator, not memory, was its
/// limit (4096 × 2560, `vcvtps2pd`/`vmulpd`/`vaddpd` plus a load and a store
/// per 4 values). Here four planes are added while `acc[j..j+8]` sits in
/// registers, so the accumulator is read and written once per four planes.
/// The sums are bit-identical to the plain loop: the same additions in the
/// same order per `j`, and `fma(x, x, a)` equals `a + x * x` because the
/// float64 square of a float32 is exact (48 significant bits).
@inline(__always)
func accumulateFloatPlanes(_ p: UnsafePointer<Float>, rows: Int, plane: Int, l1: Bool,
                           into acc: UnsafeMutablePointer<Double>) {
    var r = 0
    #if arch(x86_64)
    let magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFF_FFFF_FFFF_FFFF))
    @inline(__always) func add(_ a: __m256d, _ at: UnsafePointer<Float>) -> __m256d {
        let x = _mm256_cvtps_pd(UnsafeRawPointer(at).loadUnaligned(as: __m128.self))
        return l1 ? _mm256_add_pd(a, _mm256_and_pd(x, magnitude)) : _mm256_fmadd_pd(x, x, a)
    }
    while r &+ 4 <= rows {
        let p0 = p + r &* plane, p1 = p0 + plane, p2 = p1 + plane, p3 = p2 + plane
        var j = 0
        while j &+ 8 <= plane {
            let slot = UnsafeMutableRawPointer(acc + j)
            var a = slot.loadUnaligned(as: __m256d.self)
            var b = slot.loadUnaligned(fromByteOffset: 32, as: __m256d.self)
            a = add(a, p0 + j); b = add(b, p0 + (j &+ 4))
            a = add(a, p1 + j); b = add(b, p1 + (j &+ 4))
            a = add(a, p2 + j); b = add(b, p2 + (j &+ 4))
            a = add(a, p3 + j); b = add(b, p3 + (j &+ 4))
            slot.storeBytes(of: a, as: __m256d.self)
            slot.storeBytes(of: b, toByteOffset: 32, as: __m256d.self)
            j &+= 8
        }
        while j < plane {
            @inline(__always) func f(_ q: UnsafePointer<Float>) -> Double {
                let x = Double(q[j])
                return l1 ? x.magnitude : x * x
            }
            acc[j] = (((acc[j] + f(p0)) + f(p1)) + f(p2)) + f(p3)
            j &+= 1
        }
        r &+= 4
    }
    #endif
    while r < rows {
        let q = p + r &* plane
        if l1 {
            for j in 0 ..< plane { acc[j] += Double(q[j].magnitude) }
        } else {
            for j in 0 ..< plane { let x = Double(q[j]); acc[j] += x * x }
        }
        r &+= 1
    }
}
