/// Eigendecomposition of a real symmetric matrix in `Double`:
/// Householder reduction to tridiagonal form, then the implicit QL
/// algorithm with Wilkinson-style shifts (as in EISPACK `tql2`), then the
/// back-transformation of the eigenvectors.
///
/// Storage is row-major throughout and every inner loop runs over a
/// contiguous row: the reduction works on the full symmetric matrix (row k
/// equals column k), the QL rotations act on rows of `Zᵀ`, and the
/// eigenvectors come out as *rows*. The matrix-vector and rank-2 updates
/// and the rotations are split over ``Threading/threadCount`` workers.
enum SymmetricEigen {
    /// Overwrites the `n × n` symmetric matrix `a` (full storage) with its
    /// eigenvectors, one per row, and returns the eigenvalues, ascending.
    /// Row `i` of `a` on return is the unit eigenvector of eigenvalue `i`.
    static func decompose(_ a: UnsafeMutablePointer<Double>, n: Int) -> [Double] {
        guard n > 0 else { return [] }
        if n == 1 {
            let value = a[0]
            a[0] = 1
            return [value]
        }
        var d = [Double](repeating: 0, count: n)
        var e = [Double](repeating: 0, count: n)
        var tau = [Double](repeating: 0, count: n)
        tridiagonalize(a, n: n, d: &d, e: &e, tau: &tau)
        // The Householder vectors stay in the upper triangle of `a`; the
        // rotations accumulate in a separate matrix Zᵀ, then Q is applied.
        let z = UnsafeMutablePointer<Double>.allocate(capacity: n * n)
        defer { z.deallocate() }
        z.initialize(repeating: 0, count: n * n)
        for i in 0 ..< n { z[i * n + i] = 1 }
        ql(d: &d, e: &e, zt: z, n: n)
        backTransform(reflectors: a, tau: tau, zt: z, n: n)
        // Sort ascending, moving rows along.
        let order = (0 ..< n).sorted { d[$0] < d[$1] }
        for (row, source) in order.enumerated() {
            (a + row * n).update(from: z + source * n, count: n)
        }
        return order.map { d[$0] }
    }

    /// Householder tridiagonalization `A = Q T Qᵀ`. On return `d` is T's
    /// diagonal, `e[i] = T[i+1, i]` (`e[n-1] = 0`), and row `k` of `a`,
    /// entries `k+1 ..< n`, holds the reflector `v_k` (with `v_k[k+1] = 1`)
    /// of `H_k = I - tau[k] v_k v_kᵀ`, `Q = H_0 H_1 ⋯ H_{n-3}`.
    static func tridiagonalize(_ a: UnsafeMutablePointer<Double>, n: Int,
                               d: inout [Double], e: inout [Double], tau: inout [Double]) {
        let p = UnsafeMutablePointer<Double>.allocate(capacity: n)
        defer { p.deallocate() }
        for k in 0 ..< max(0, n - 2) {
            d[k] = a[k * n + k]
            let length = n - k - 1
            let x = a + k * n + k + 1
            var tail = 0.0
            for i in 1 ..< length { tail += x[i] * x[i] }
            let x0 = x[0]
            if tail == 0 {
                tau[k] = 0
                e[k] = x0
                x[0] = 1
                for i in 1 ..< length { x[i] = 0 }
                continue
            }
            let norm = (x0 * x0 + tail).squareRoot()
            let beta = x0 >= 0 ? -norm : norm
            let t = (beta - x0) / beta
            let scale = 1 / (x0 - beta)
            x[0] = 1
            for i in 1 ..< length { x[i] *= scale }
            tau[k] = t
            e[k] = beta
            // Mirror v into column k so that later rows see a symmetric matrix is
            // not needed: the trailing block (rows/cols k+1..) is all that is used.
            let v = UnsafePointer(x)
            let base = k + 1
            // p = t * A22 v
            let workers = Threading.workerCount(for: length * length, minimumPerWorker: 1 << 16)
            parallelFor(workers: workers) { worker in
                for i in partitionRange(length, parts: workers, index: worker) {
                    p[i] = t * dot(a + (base + i) * n + base, v, length)
                }
            }
            // w = p - (t/2)(pᵀv) v
            let kappa = 0.5 * t * dot(p, v, length)
            for i in 0 ..< length { p[i] -= kappa * v[i] }
            let w = UnsafePointer(p)
            // A22 -= v wᵀ + w vᵀ
            parallelFor(workers: workers) { worker in
                for i in partitionRange(length, parts: workers, index: worker) {
                    let row = a + (base + i) * n + base
                    rank2Update(row, v, -w[i], w, -v[i], length)
                }
            }
        }
        d[n - 2] = a[(n - 2) * n + n - 2]
        d[n - 1] = a[(n - 1) * n + n - 1]
        e[n - 2] = a[(n - 1) * n + n - 2]
        e[n - 1] = 0
        tau[n - 2] = 0
        tau[n - 1] = 0
    }

    /// Implicit QL on the tridiagonal (d, e), rotating the rows of `zt`.
    static func ql(d: inout [Double], e: inout [Double], zt: UnsafeMutablePointer<Double>, n: Int) {
        let eps = Double.ulpOfOne
        var f = 0.0, tst1 = 0.0
        var cs = [Double](repeating: 0, count: n), sn = [Double](repeating: 0, count: n)
        for l in 0 ..< n {
            tst1 = max(tst1, abs(d[l]) + abs(e[l]))
            var m = l
            while m < n - 1 {
                if abs(e[m]) <= eps * tst1 { break }
                m += 1
            }
            if m > l {
                var iterations = 0
                repeat {
                    iterations += 1
                    var g = d[l]
                    var p = (d[l + 1] - g) / (2 * e[l])
                    var r = hypot2(p, 1)
                    if p < 0 { r = -r }
                    d[l] = e[l] / (p + r)
                    d[l + 1] = e[l] * (p + r)
                    let dl1 = d[l + 1]
                    var h = g - d[l]
                    if l + 2 < n { for i in l + 2 ..< n { d[i] -= h } }
                    f += h
                    p = d[m]
                    var c = 1.0, c2 = 1.0, c3 = 1.0
                    let el1 = e[l + 1]
                    var s = 0.0, s2 = 0.0
                    var i = m - 1
                    while i >= l {
                        c3 = c2; c2 = c; s2 = s
                        g = c * e[i]
                        h = c * p
                        r = hypot2(p, e[i])
                        e[i + 1] = s * r
                        s = e[i] / r
                        c = p / r
                        p = c * d[i] - s * g
                        d[i + 1] = h + s * (c * g + s * d[i])
                        cs[i] = c; sn[i] = s
                        i -= 1
                    }
                    p = -s * s2 * c3 * el1 * e[l] / dl1
                    e[l] = s * p
                    d[l] = c * p
                    applyRotations(zt, n: n, from: m - 1, to: l, cs: cs, sn: sn)
                } while abs(e[l]) > eps * tst1 && iterations < 100
            }
            d[l] += f
            e[l] = 0
        }
    }

    /// Applies the rotations of one QL sweep (i = from, from-1, …, to) to
    /// rows i, i+1 of `zt`, splitting the columns over workers.
    static func applyRotations(_ zt: UnsafeMutablePointer<Double>, n: Int, from: Int, to: Int,
                               cs: [Double], sn: [Double]) {
        let rotations = from - to + 1
        let workers = Threading.workerCount(for: rotations * n, minimumPerWorker: 1 << 15)
        cs.withUnsafeBufferPointer { cs in
            sn.withUnsafeBufferPointer { sn in
                parallelFor(workers: workers) { worker in
                    // Split on multiples of 8 columns for clean vector loops.
                    let chunks = (n + 7) / 8
                    let range = partitionRange(chunks, parts: workers, index: worker)
                    let lo = range.lowerBound * 8, hi = min(n, range.upperBound * 8)
                    guard lo < hi else { return }
                    var i = from
                    while i >= to {
                        rotate(zt + i * n + lo, zt + (i + 1) * n + lo, cs[i], sn[i], hi - lo)
                        i -= 1
                    }
                }
            }
        }
    }

    /// Each row z (an eigenvector of T) becomes Q z = H_0 (H_1 (⋯ H_{n-3} z)).
    static func backTransform(reflectors a: UnsafePointer<Double>, tau: [Double],
                              zt: UnsafeMutablePointer<Double>, n: Int) {
        let workers = Threading.workerCount(for: n * n * n, minimumPerWorker: 1 << 20)
        tau.withUnsafeBufferPointer { tau in
            parallelFor(workers: workers) { worker in
                for row in partitionRange(n, parts: workers, index: worker) {
                    let z = zt + row * n
                    var k = n - 3
                    while k >= 0 {
                        let t = tau[k]
                        if t != 0 {
                            let v = a + k * n + k + 1
                            let length = n - k - 1
                            let s = t * dot(v, UnsafePointer(z + k + 1), length)
                            axpy(-s, v, z + k + 1, length)
                        }
                        k -= 1
                    }
                }
            }
        }
    }
}

/// `sqrt(a² + b²)` without undue overflow.
@inline(__always)
func hypot2(_ a: Double, _ b: Double) -> Double {
    let x = abs(a), y = abs(b)
    let big = max(x, y), small = min(x, y)
    if big == 0 { return 0 }
    let ratio = small / big
    return big * (1 + ratio * ratio).squareRoot()
}

/// Σ x[i] y[i], vectorized.
@inline(__always)
func dot(_ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, _ count: Int) -> Double {
    typealias V = SIMD4<Double>
    var s0 = V(), s1 = V()
    var i = 0
    while i + 8 <= count {
        s0 = s0.addingProduct(loadVector(x + i) as V, loadVector(y + i) as V)
        s1 = s1.addingProduct(loadVector(x + i + 4) as V, loadVector(y + i + 4) as V)
        i += 8
    }
    var total = (s0 + s1).sum()
    while i < count { total += x[i] * y[i]; i += 1 }
    return total
}

@inline(__always)
func dot(_ x: UnsafeMutablePointer<Double>, _ y: UnsafePointer<Double>, _ count: Int) -> Double {
    dot(UnsafePointer(x), y, count)
}

/// y += alpha x, vectorized.
@inline(__always)
func axpy(_ alpha: Double, _ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ count: Int) {
    typealias V = SIMD4<Double>
    let a = V(repeating: alpha)
    var i = 0
    while i + 4 <= count {
        storeVector((loadVector(y + i) as V).addingProduct(a, loadVector(x + i) as V), y + i)
        i += 4
    }
    while i < count { y[i] += alpha * x[i]; i += 1 }
}

/// row += alpha·x + beta·y (the two halves of a symmetric rank-2 update).
@inline(__always)
func rank2Update(_ row: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Double>, _ alpha: Double,
                 _ y: UnsafePointer<Double>, _ beta: Double, _ count: Int) {
    typealias V = SIMD4<Double>
    let a = V(repeating: alpha), b = V(repeating: beta)
    var i = 0
    while i + 4 <= count {
        var r: V = loadVector(row + i)
        r = r.addingProduct(a, loadVector(x + i) as V)
        r = r.addingProduct(b, loadVector(y + i) as V)
        storeVector(r, row + i)
        i += 4
    }
    while i < count { row[i] += alpha * x[i] + beta * y[i]; i += 1 }
}

/// (x, y) ← (c·x − s·y, s·x + c·y), the QL rotation of rows i and i+1.
@inline(__always)
func rotate(_ x: UnsafeMutablePointer<Double>, _ y: UnsafeMutablePointer<Double>,
            _ c: Double, _ s: Double, _ count: Int) {
    typealias V = SIMD4<Double>
    let cv = V(repeating: c), sv = V(repeating: s)
    var i = 0
    while i + 4 <= count {
        let xv: V = loadVector(x + i), yv: V = loadVector(y + i)
        storeVector(cv * xv - sv * yv, x + i)
        storeVector(sv * xv + cv * yv, y + i)
        i += 4
    }
    while i < count {
        let xv = x[i], yv = y[i]
        x[i] = c * xv - s * yv
        y[i] = s * xv + c * yv
        i += 1
    }
}
