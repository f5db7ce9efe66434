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
/// per 4 values). Here eight planes (then four, then one at a time) are added
/// while `acc[j..j+8]` sits in registers, so the accumulator is read and
/// written once per eight planes. Eight beat four (a C model of this loop,
/// 4096 × 2560, one thread, interleaved on the shared VM, load 3–5: median
/// CPU 3.05 → 2.33 ms and 4.33 → 3.30 ms in two runs); sixteen were no better.
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
    // `planes` planes from `first` added while acc[j ..< j + 8] sits in registers.
    @inline(__always) func pass(_ first: UnsafePointer<Float>, _ planes: Int) {
        var j = 0
        while j &+ 8 <= plane {
            let slot = UnsafeMutableRawPointer(acc + j)
            var a = slot.loadUnaligned(as: __m256d.self)
            var b = slot.loadUnaligned(fromByteOffset: 32, as: __m256d.self)
            var q = first + j
            for _ in 0 ..< planes {
                a = add(a, q); b = add(b, q + 4)
                q += plane
            }
            slot.storeBytes(of: a, as: __m256d.self)
            slot.storeBytes(of: b, toByteOffset: 32, as: __m256d.self)
            j &+= 8
        }
        while j < plane {
            var sum = acc[j], q = first + j
            for _ in 0 ..< planes {
                let x = Double(q.pointee)
                sum += l1 ? x.magnitude : x * x
                q += plane
            }
            acc[j] = sum
            j &+= 1
        }
    }
    while r &+ 8 <= rows {
        pass(p + r &* plane, 8)
        r &+= 8
    }
    if r &+ 4 <= rows {
        pass(p + r &* plane, 4)
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
