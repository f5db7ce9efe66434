/// ``TridiagonalSolver`` for ``width`` shifts at once, one per SIMD lane:
/// inverse iteration's eigenvalues outside clusters need no
/// orthogonalization, so their solves are independent.
///
/// The scalar solver's factorization and solves are serial recurrences (a
/// division, or a multiply and subtract, on the critical path of every
/// step) with a data-dependent pivoting branch that mispredicts about half
/// the time; here each step serves eight eigenvalues, with the pivoting
/// choice made per lane by selects. Every lane performs exactly the scalar
/// solver's operations in the same order, and ``normalize(_:)`` sums in
/// the order of `dot`, so the vectors are bit-identical to the scalar
/// path's.
final class TridiagonalSolverLanes {
    typealias Lanes = SIMD8<Double>
    typealias Mask = SIMDMask<SIMD8<Int64>>
    /// Shifts per solve.
    static var width: Int { Lanes.scalarCount }

    let n: Int
    /// Per step `i`: the multiplier, the reciprocal pivot, the first and
    /// second superdiagonal of U, and which lanes swapped rows `i` and `i + 1`.
    let lower: UnsafeMutablePointer<Lanes>, inverseDiagonal: UnsafeMutablePointer<Lanes>
    let upper: UnsafeMutablePointer<Lanes>, upper2: UnsafeMutablePointer<Lanes>
    let swapped: UnsafeMutablePointer<Mask>

    /// - Throws: `.outOfMemory` if the scratch cannot be allocated.
    init(n: Int) throws {
        self.n = n
        (lower, inverseDiagonal, upper, upper2, swapped) = try TridiagonalLUStorage.allocate(Lanes.self, Mask.self, n: n)
    }

    deinit { TridiagonalLUStorage.free(lower, swapped) }

    /// `|x|` per lane (only compared, so the sign of a zero does not matter).
    @inline(__always)
    static func magnitude(_ x: Lanes) -> Lanes { x.replacing(with: -x, where: x .< 0) }

    /// LU with partial pivoting of `T − shifts[l] I` in each lane `l`
    /// (``TridiagonalSolver/factor(d:e:shift:tiny:)`` per lane).
    func factor(d: UnsafeBufferPointer<Double>, e: UnsafeBufferPointer<Double>, shifts: Lanes, tiny: Double) {
        guard n > 0 else { return }
        let tinyLanes = Lanes(repeating: tiny)
        // Row i's pivot candidate and U[i, i+1] as the earlier steps left them.
        var diagonal = Lanes(repeating: d[0]) - shifts
        var up = Lanes(repeating: n > 1 ? e[0] : 0)
        for i in 0 ..< n - 1 {
            let low = Lanes(repeating: e[i])
            let nextDiagonal = Lanes(repeating: d[i + 1]) - shifts
            let nextUp = Lanes(repeating: i + 2 < n ? e[i + 1] : 0)
            let keep = Self.magnitude(diagonal) .>= Self.magnitude(low)   // no row swap
            let pivot = diagonal.replacing(with: tinyLanes, where: keep .& (diagonal .== 0))
            let factor = low.replacing(with: diagonal, where: .!keep) / pivot.replacing(with: low, where: .!keep)
            lower[i] = factor
            inverseDiagonal[i] = pivot.replacing(with: low, where: .!keep)
            upper[i] = up.replacing(with: nextDiagonal, where: .!keep)
            upper2[i] = Lanes().replacing(with: nextUp, where: .!keep)
            swapped[i] = .!keep
            let keptDiagonal = nextDiagonal - factor * up
            diagonal = keptDiagonal.replacing(with: up - factor * nextDiagonal, where: .!keep)
            up = nextUp.replacing(with: -factor * nextUp, where: .!keep)
        }
        inverseDiagonal[n - 1] = diagonal
        lower[n - 1] = Lanes(); upper[n - 1] = Lanes(); upper2[n - 1] = Lanes()
        swapped[n - 1] = Mask(repeating: false)
        for i in 0 ..< n {
            var pivot = inverseDiagonal[i]
            let clamped = Lanes(repeating: tiny).replacing(with: -tiny, where: pivot .< 0)
            pivot.replace(with: clamped, where: Self.magnitude(pivot) .< tinyLanes)
            inverseDiagonal[i] = 1 / pivot
        }
    }

    /// Overwrites `b` (`n` steps of lanes) with `(T − shifts[l] I)⁻¹ b` per
    /// lane, rescaling a lane to avoid overflow
    /// (``TridiagonalSolver/solve(_:)`` per lane).
    func solve(_ b: UnsafeMutablePointer<Lanes>) {
        guard n > 0 else { return }
        var carry = b[0]
        for i in 0 ..< n - 1 {
            let next = b[i + 1], swap = swapped[i]
            let first = carry.replacing(with: next, where: swap)
            b[i] = first
            carry = next.replacing(with: carry, where: swap) - lower[i] * first
        }
        b[n - 1] = carry
        let limit = Lanes(repeating: 1e150)
        var largest = Lanes()
        var i = n - 1
        while i >= 0 {
            var value = b[i]
            if i + 1 < n { value -= upper[i] * b[i + 1] }
            if i + 2 < n { value -= upper2[i] * b[i + 2] }
            value *= inverseDiagonal[i]
            b[i] = value
            largest = largest.replacing(with: Self.magnitude(value), where: largest .< Self.magnitude(value))
            let big = largest .> limit
            if any(big) {
                // Rescale those lanes; the direction is all that matters.
                let scale = Lanes(repeating: 1).replacing(with: 1e-150, where: big)
                for k in 0 ..< n { b[k] *= scale }
                largest *= scale
            }
            i -= 1
        }
    }

    /// Scales each lane of `x` to unit length (zero if its length is 0 or
    /// not finite), with each lane's sum of squares in the order of `dot`.
    func normalize(_ x: UnsafeMutablePointer<Lanes>) {
        var sums = (Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes())
        var i = 0
        while i + 8 <= n {
            sums.0 = sums.0.addingProduct(x[i], x[i]); sums.1 = sums.1.addingProduct(x[i + 1], x[i + 1])
            sums.2 = sums.2.addingProduct(x[i + 2], x[i + 2]); sums.3 = sums.3.addingProduct(x[i + 3], x[i + 3])
            sums.4 = sums.4.addingProduct(x[i + 4], x[i + 4]); sums.5 = sums.5.addingProduct(x[i + 5], x[i + 5])
            sums.6 = sums.6.addingProduct(x[i + 6], x[i + 6]); sums.7 = sums.7.addingProduct(x[i + 7], x[i + 7])
            i += 8
        }
        // dot's two SIMD4 accumulators hold lanes k and k + 4 of each group of eight.
        let halves = (sums.0 + sums.4, sums.1 + sums.5, sums.2 + sums.6, sums.3 + sums.7)
        var totals = Lanes()
        for l in 0 ..< Self.width {
            totals[l] = SIMD4<Double>(halves.0[l], halves.1[l], halves.2[l], halves.3[l]).sum()
        }
        while i < n { totals += x[i] * x[i]; i += 1 }
        var scales = Lanes()
        for l in 0 ..< Self.width {
            let length = totals[l].squareRoot()
            scales[l] = length > 0 && length.isFinite ? 1 / length : 0
        }
        for i in 0 ..< n { x[i] *= scales }
    }
}
