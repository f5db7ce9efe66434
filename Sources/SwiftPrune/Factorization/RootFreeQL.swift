/// Eigenvalues of a symmetric tridiagonal matrix by the Pal–Walker–Kahan
/// root-free variant of the implicit QL / QR algorithm (the method of LAPACK
/// `dsterf`, transcribed from its description).
///
/// The iteration works on the squares of the off-diagonal, so its inner loop
/// has two divisions and no square root, where the rotations of EISPACK's
/// `tql1` / ``SymmetricEigen/ql(d:e:zt:n:)`` need a `hypot` (a division and a
/// square root on the loop's serial dependency chain) per step. On the
/// 512 × 512 Rayleigh–Ritz problem of a rank-256 randomized SVD the
/// hypot-based QL was ~2% of the call.
///
/// Each unreduced block is scaled by a power of two (exact) into the range
/// where the squares neither overflow nor underflow, and QL or QR is chosen
/// per block so that the iteration chases toward the end with the larger
/// diagonal entry (as `dsterf`). The eigenvalues are backward stable, like
/// QL's; they differ from QL's by rounding.
extension SymmetricEigen {
    /// Overwrites `d` (`n` diagonal entries) with the eigenvalues, ascending,
    /// of the symmetric tridiagonal matrix with off-diagonal `e` (`e[i] = T[i+1, i]`,
    /// `n - 1` entries used); `e` is destroyed. Returns `false` when the
    /// iteration has not converged after `30 n` sweeps (`d` then holds no
    /// usable result and the caller falls back to ``ql(d:e:zt:n:)``).
    static func rootFreeQLValues(d: UnsafeMutablePointer<Double>, e: UnsafeMutablePointer<Double>, n: Int) -> Bool {
        guard n > 1 else { return true }
        let eps = Double.ulpOfOne / 2          // unit roundoff
        let eps2 = eps * eps
        let safeMinimum = Double.leastNormalMagnitude
        // Blocks whose largest entry lies outside [smallest, largest] are scaled:
        // the squares of the off-diagonal then stay normal and finite.
        let largest = (1 / safeMinimum).squareRoot() / 3
        let smallest = safeMinimum.squareRoot() / eps2
        let maximumSweeps = 30 * n
        var sweeps = 0
        var start = 0
        while start < n {
            if start > 0 { e[start - 1] = 0 }
            // The unreduced block start ... end: split where an off-diagonal entry is negligible.
            var end = start
            while end < n - 1 {
                if abs(e[end]) <= abs(d[end]).squareRoot() * abs(d[end + 1]).squareRoot() * eps {
                    e[end] = 0
                    break
                }
                end += 1
            }
            let first = start, last = end
            start = end + 1
            if last == first { continue }
            var norm = 0.0
            for i in first ... last { norm = max(norm, abs(d[i])) }
            for i in first ..< last { norm = max(norm, abs(e[i])) }
            if norm == 0 { continue }
            var scale = 1.0
            if norm > largest || norm < smallest {
                // A power of two near 1 / norm: exact scaling both ways.
                // (at most 2^1000: a subnormal norm's 2^-exponent would overflow).
                scale = Double(sign: .plus, exponent: min(1000, -norm.exponent), significand: 1)
                for i in first ... last { d[i] *= scale }
                for i in first ..< last { e[i] *= scale }
            }
            for i in first ..< last { e[i] *= e[i] }
            let converged: Bool
            if abs(d[last]) < abs(d[first]) {
                converged = rootFreeQR(d: d, e: e, from: last, to: first, eps2: eps2,
                                       sweeps: &sweeps, maximumSweeps: maximumSweeps)
            } else {
                converged = rootFreeQL(d: d, e: e, from: first, to: last, eps2: eps2,
                                       sweeps: &sweeps, maximumSweeps: maximumSweeps)
            }
            if scale != 1 {
                for i in first ... last { d[i] /= scale }
            }
            guard converged else { return false }
        }
        var sorted = UnsafeMutableBufferPointer(start: d, count: n)
        sorted.sort()
        return true
    }

    /// QL sweeps on the block `l ... end` (`l < end`), `e` holding squared
    /// off-diagonal entries, until every eigenvalue of the block is found
    /// (`true`) or `sweeps` reaches `maximumSweeps` (`false`).
    private static func rootFreeQL(d: UnsafeMutablePointer<Double>, e: UnsafeMutablePointer<Double>,
                                   from lStart: Int, to end: Int, eps2: Double,
                                   sweeps: inout Int, maximumSweeps: Int) -> Bool {
        var l = lStart
        while l <= end {
            // The first negligible (squared) off-diagonal entry at or after l.
            var m = l
            while m < end {
                if abs(e[m]) <= eps2 * abs(d[m] * d[m + 1]) { break }
                m += 1
            }
            if m < end { e[m] = 0 }
            if m == l {
                l += 1          // d[l] is an eigenvalue
                continue
            }
            if m == l + 1 {
                (d[l], d[l + 1]) = eigenvalues2x2(d[l], e[l].squareRoot(), d[l + 1])
                e[l] = 0
                l += 2
                continue
            }
            guard sweeps < maximumSweeps else { return false }
            sweeps += 1
            // Wilkinson-style shift from the leading 2 × 2.
            let p = d[l]
            let root = e[l].squareRoot()
            var sigma = (d[l + 1] - p) / (2 * root)
            let r = hypot2(sigma, 1)
            sigma = p - root / (sigma + (sigma < 0 ? -r : r))
            var c = 1.0, s = 0.0
            var gamma = d[m] - sigma
            var q = gamma * gamma
            var i = m - 1
            while i >= l {
                let bb = e[i]
                let r = q + bb
                if i != m - 1 { e[i + 1] = s * r }
                let oldC = c
                c = q / r
                s = bb / r
                let oldGamma = gamma
                let alpha = d[i]
                gamma = c * (alpha - sigma) - s * oldGamma
                d[i + 1] = oldGamma + (alpha - gamma)
                q = c != 0 ? (gamma * gamma) / c : oldC * bb
                i -= 1
            }
            e[l] = s * q
            d[l] = sigma + gamma
        }
        return true
    }

    /// QR sweeps on the block `end ... l` (`end < l`, chasing downward), the
    /// mirror image of ``rootFreeQL(d:e:from:to:eps2:sweeps:maximumSweeps:)``.
    private static func rootFreeQR(d: UnsafeMutablePointer<Double>, e: UnsafeMutablePointer<Double>,
                                   from lStart: Int, to end: Int, eps2: Double,
                                   sweeps: inout Int, maximumSweeps: Int) -> Bool {
        var l = lStart
        while l >= end {
            // The first negligible (squared) off-diagonal entry at or before l.
            var m = l
            while m > end {
                if abs(e[m - 1]) <= eps2 * abs(d[m] * d[m - 1]) { break }
                m -= 1
            }
            if m > end { e[m - 1] = 0 }
            if m == l {
                l -= 1
                continue
            }
            if m == l - 1 {
                (d[l], d[l - 1]) = eigenvalues2x2(d[l], e[l - 1].squareRoot(), d[l - 1])
                e[l - 1] = 0
                l -= 2
                continue
            }
            guard sweeps < maximumSweeps else { return false }
            sweeps += 1
            let p = d[l]
            let root = e[l - 1].squareRoot()
            var sigma = (d[l - 1] - p) / (2 * root)
            let r = hypot2(sigma, 1)
            sigma = p - root / (sigma + (sigma < 0 ? -r : r))
            var c = 1.0, s = 0.0
            var gamma = d[m] - sigma
            var q = gamma * gamma
            for i in m ..< l {
                let bb = e[i]
                let r = q + bb
                if i != m { e[i - 1] = s * r }
                let oldC = c
                c = q / r
                s = bb / r
                let oldGamma = gamma
                let alpha = d[i + 1]
                gamma = c * (alpha - sigma) - s * oldGamma
                d[i] = oldGamma + (alpha - gamma)
                q = c != 0 ? (gamma * gamma) / c : oldC * bb
            }
            e[l - 1] = s * q
            d[l] = sigma + gamma
        }
        return true
    }

    /// Eigenvalues of `[[a, b], [b, c]]`, the one of larger magnitude first,
    /// the other from the determinant (no cancellation; as LAPACK `dlae2`).
    static func eigenvalues2x2(_ a: Double, _ b: Double, _ c: Double) -> (Double, Double) {
        let sum = a + c, difference = a - c
        let (larger, smaller) = abs(a) > abs(c) ? (a, c) : (c, a)
        let radius = hypot2(difference, 2 * b)
        if sum == 0 { return (0.5 * radius, -0.5 * radius) }
        let first = 0.5 * (sum < 0 ? sum - radius : sum + radius)
        return (first, (larger / first) * smaller - (b / first) * b)
    }
}
