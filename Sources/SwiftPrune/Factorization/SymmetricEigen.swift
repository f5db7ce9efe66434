/// Eigendecomposition of a real symmetric matrix in `Double`:
/// Householder reduction to tridiagonal form (blocked above 128 rows, see
/// `BlockedTridiagonalization.swift`), eigenvalues by the root-free QL
/// algorithm (`RootFreeQL.swift`, as LAPACK `dsterf`), eigenvectors of the tridiagonal matrix
/// by inverse iteration (``TridiagonalEigenvectors``; QL with accumulated
/// rotations is the verified fallback), then the blocked back-transformation.
///
/// Storage is row-major throughout and every inner loop runs over a
/// contiguous row: the reduction works on the symmetric matrix's upper
/// triangle (row k equals column k), and the eigenvectors come out as *rows*. The row
/// passes, the rotations and the back-transformation (GEMM) are split over
/// ``Threading/threadCount`` workers.
enum SymmetricEigen {
    /// Overwrites the `n × n` symmetric matrix `a` (full storage) with its
    /// eigenvectors, one per row, and returns the eigenvalues, ascending.
    /// Row `i` of `a` on return is the unit eigenvector of eigenvalue `i`.
    /// How the eigenvectors of the tridiagonal matrix are found.
    enum VectorMethod {
        /// Inverse iteration, with rotations as the fallback (the default).
        case inverseIteration
        /// QL with accumulated rotations only (O(n³); kept for tests and as the fallback).
        case rotations
    }

    ///
    /// Eigenvalues at most `negligible · max|λ|` (e.g. the null space of a Gram
    /// matrix) get *some* orthonormal basis of the complement of the other
    /// eigenvectors instead of their exact eigenvectors, which inverse
    /// iteration could only find at O(n k²) cost for a cluster of k. By
    /// default every eigenvector is computed.
    ///
    /// With `top: k` only the eigenvectors of the `k` largest eigenvalues are
    /// computed (rows `n - k ..< n`; the other rows are left unspecified):
    /// inverse iteration runs only on those eigenvalues (and on the rest of a
    /// cluster that straddles the boundary, so that they are orthogonalized
    /// as in the full decomposition) and only their rows are
    /// back-transformed — what a Rayleigh–Ritz step that keeps `k` of `n`
    /// Ritz vectors needs. Every eigenvalue is still returned.
    static func decompose(_ a: UnsafeMutablePointer<Double>, n: Int,
                          method: VectorMethod = .inverseIteration,
                          negligible: Double = -Double.infinity, top: Int? = nil) throws -> [Double] {
        guard n > 0 else { return [] }
        if n == 1 {
            let value = a[0]
            a[0] = 1
            return [value]
        }
        var d = try [Double](fallibleRepeating: 0, count: n)
        var e = try [Double](fallibleRepeating: 0, count: n)
        var tau = try [Double](fallibleRepeating: 0, count: n)
        try tridiagonalizeBlocked(a, n: n, d: &d, e: &e, tau: &tau)
        // The Householder vectors stay in the upper triangle of `a`; the
        // eigenvectors of T go into a separate matrix Zᵀ, then Q is applied.
        let z = try HugePageScratch.allocate(Double.self, count: n * n)
        defer { FallibleAllocation.free(z) }
        // Eigenvalues by root-free QL without vectors (O(n²); hypot-based QL if it
        // does not converge), eigenvectors of T by inverse iteration (O(n²) plus
        // re-orthogonalization inside clusters), checked; QL with accumulated
        // rotations (O(n³)) is the fallback.
        var values = d, work = e
        let converged = values.withUnsafeMutableBufferPointer { values in
            work.withUnsafeMutableBufferPointer { work in
                rootFreeQLValues(d: values.baseAddress!, e: work.baseAddress!, n: n)
            }
        }
        if !converged {
            values = d
            work = e
            ql(d: &values, e: &work, zt: nil, n: n)
            values.sort()  // (root-free QL returns them sorted)
        }
        var order = Array(0 ..< n)
        let negligibleValue = negligible * values.reduce(0) { max($0, abs($1)) }
        var first = n - min(n, max(0, top ?? n))
        let found = try method != .rotations && [TridiagonalEigenvectors.Tolerances.tight, .conservative].contains {
            try TridiagonalEigenvectors.inverseIteration(d: d, e: e, values: values, zt: z, n: n,
                                                     negligible: negligibleValue, tolerances: $0, first: first)
        }
        if !found {
            z.initialize(repeating: 0, count: n * n)
            for i in 0 ..< n { z[i * n + i] = 1 }
            values = d
            work = e
            ql(d: &values, e: &work, zt: z, n: n)
            order = (0 ..< n).sorted { values[$0] < values[$1] }
            first = 0
        }
        try backTransform(reflectors: a, tau: tau, zt: z + first * n, n: n, rows: n - first)
        // Ascending order, moving rows along.
        for (row, source) in order.enumerated() where row >= first {
            (a + row * n).update(from: z + source * n, count: n)
        }
        return order.map { values[$0] }
    }

    /// Householder tridiagonalization `A = Q T Qᵀ`. On return `d` is T's
    /// diagonal, `e[i] = T[i+1, i]` (`e[n-1] = 0`), and row `k` of `a`,
    /// entries `k+1 ..< n`, holds the reflector `v_k` (with `v_k[k+1] = 1`)
    /// of `H_k = I - tau[k] v_k v_kᵀ`, `Q = H_0 H_1 ⋯ H_{n-3}`.
    ///
    /// Each step's rank-2 update `A22 −= v wᵀ + w vᵀ` is applied lazily, in the
    /// same pass over the rows as the next step's product `A22 v`, so that the
    /// trailing matrix is streamed through memory once per step, not twice.
    ///
    /// With `from: start`, reflectors `0 ..< start` are already done (by
    /// ``tridiagonalizeBlocked(_:n:d:e:tau:)``) and rows/columns `start ..< n`
    /// hold the full symmetric trailing matrix.
    /// - Throws: `.outOfMemory` if its two work vectors cannot be allocated.
    static func tridiagonalize(_ a: UnsafeMutablePointer<Double>, n: Int,
                               d: inout [Double], e: inout [Double], tau: inout [Double], from start: Int = 0) throws {
        let buffers = try FallibleAllocation.allocate(Double.self, count: 2 * n, "the tridiagonalization's vectors")
        defer { FallibleAllocation.free(buffers) }
        var current = buffers, previous = buffers + n
        // The update not yet applied: v and w of the previous step, indexed from its first row.
        var pendingV: UnsafePointer<Double>?
        var pendingW: UnsafePointer<Double>?
        for k in start ..< max(start, n - 2) {
            if let pv = pendingV, let pw = pendingW {
                rank2Update(a + k * n + k, pv, -pw[0], pw, -pv[0], n - k)
            }
            d[k] = a[k * n + k]
            let length = n - k - 1
            let x = a + k * n + k + 1
            let (beta, t) = householderReflector(x, length: length)
            e[k] = beta
            tau[k] = t
            let v = UnsafePointer(x)
            let base = k + 1
            let p = current
            // One pass: finish the previous update on each row, then p = t · A22 v.
            let workers = Threading.workerCount(for: length * length, minimumPerWorker: 1 << 16)
            parallelFor(workers: workers) { worker in
                for i in partitionRange(length, parts: workers, index: worker) {
                    let row = a + (base + i) * n + base
                    if let pv = pendingV, let pw = pendingW {
                        p[i] = t * updateThenDot(row, pv + 1, -pw[i + 1], pw + 1, -pv[i + 1], v, length)
                    } else {
                        p[i] = t * dot(row, v, length)
                    }
                }
            }
            // w = p - (t/2)(pᵀv) v
            let kappa = 0.5 * t * dot(p, v, length)
            for i in 0 ..< length { p[i] -= kappa * v[i] }
            pendingV = v
            pendingW = UnsafePointer(p)
            swap(&current, &previous)
        }
        if let pv = pendingV, let pw = pendingW {
            rank2Update(a + (n - 2) * n + n - 2, pv, -pw[0], pw, -pv[0], 2)
            rank2Update(a + (n - 1) * n + n - 2, pv, -pw[1], pw, -pv[1], 2)
        }
        d[n - 2] = a[(n - 2) * n + n - 2]
        d[n - 1] = a[(n - 1) * n + n - 1]
        e[n - 2] = a[(n - 1) * n + n - 2]
        e[n - 1] = 0
        tau[n - 2] = 0
        tau[n - 1] = 0
    }

    /// Implicit QL on the tridiagonal (d, e), rotating the rows of `zt`.
    /// With `zt == nil` only the eigenvalues are computed (O(n²)).
    static func ql(d: inout [Double], e: inout [Double], zt: UnsafeMutablePointer<Double>?, n: Int) {
        let eps = Double.ulpOfOne
        var f = 0.0, tst1 = 0.0
        // Rotations are recorded and applied later in column chunks that stay in
        // cache (columns of Zᵀ are independent), instead of streaming all of Zᵀ
        // through memory once per sweep.
        var rotations = RotationLog(capacity: zt == nil ? 1 : min(1 << 22, 4 * n * n))
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
                        if let zt, !rotations.append(row: i, c: c, s: s) {
                            rotations.flush(into: zt, n: n)
                            _ = rotations.append(row: i, c: c, s: s)
                        }
                        i -= 1
                    }
                    p = -s * s2 * c3 * el1 * e[l] / dl1
                    e[l] = s * p
                    d[l] = c * p
                } while abs(e[l]) > eps * tst1 && iterations < 100
            }
            d[l] += f
            e[l] = 0
        }
        if let zt { rotations.flush(into: zt, n: n) }
    }

    /// Each row z (an eigenvector of T) becomes Q z = H_0 (H_1 (⋯ H_{n-3} z)),
    /// i.e. `Zᵀ ← Zᵀ H_{n-3} ⋯ H_0`, in blocks of `nb` reflectors written in
    /// compact WY form (`H_{k0} ⋯ H_{k1-1} = I − V T Vᵀ`, LAPACK's `larft`),
    /// so that almost all the work is GEMMs.
    ///
    /// Rows of `Zᵀ` are transformed independently, so they are taken in
    /// chunks small enough to stay in L2 while *every* block of reflectors
    /// passes over them (each worker its own chunks): applying one block to
    /// all of `Zᵀ` at a time would stream the whole matrix through memory
    /// twice per block, and its depth-`nb` GEMMs would wait on it.
    ///
    /// `rows` (default `n`): how many rows of `Zᵀ` (`n` apart) `zt` points at.
    static func backTransform(reflectors a: UnsafePointer<Double>, tau: [Double],
                              zt: UnsafeMutablePointer<Double>, n: Int, rows rowCount: Int? = nil) throws {
        let rowCount = rowCount ?? n
        guard rowCount > 0 else { return }
        let count = n - 2   // reflectors 0 ..< n-2
        guard count > 0 else { return }
        let nb = 32
        let blocks = (count + nb - 1) / nb
        // Block q holds reflectors k0 = q·nb ..< min(k0 + nb, count) on coordinates k0+1 ..< n.
        var offsets = try [Int](fallibleRepeating: 0, count: blocks + 1, "the back-transformation's block offsets")
        for q in 0 ..< blocks { offsets[q + 1] = offsets[q] + nb * (n - q * nb - 1) }
        let vts = try FallibleAllocation.allocate(Double.self, count: offsets[blocks])
        defer { FallibleAllocation.free(vts) }
        let ts = try FallibleAllocation.allocate(Double.self, count: blocks * nb * nb)
        defer { FallibleAllocation.free(ts) }
        for q in 0 ..< blocks {
            let k0 = q * nb, b = min(nb, count - k0), length = n - k0 - 1
            let vt = vts + offsets[q], t = ts + q * nb * nb
            // Rows of Vᵀ: v_{k0+j} on coordinates k0+1 ..< n, zero before its leading 1.
            for j in 0 ..< b {
                let row = vt + j * length
                row.update(repeating: 0, count: j)
                row[j] = 1
                let source = a + (k0 + j) * n + k0 + 1
                for i in j + 1 ..< length { row[i] = source[i] }
            }
            // T, column by column: T[0..<i, i] = −τ_i · T[0..<i, 0..<i] · (Vᵀ v_i)[0..<i].
            t.update(repeating: 0, count: b * b)
            var products = [Double](repeating: 0, count: b)
            for i in 0 ..< b {
                let tauI = tau[k0 + i]
                t[i * b + i] = tauI
                guard i > 0, tauI != 0 else { continue }
                for r in 0 ..< i { products[r] = dot(vt + r * length + i, vt + i * length + i, length - i) }
                for r in 0 ..< i {
                    var sum = 0.0
                    for c in r ..< i { sum += t[r * b + c] * products[c] }
                    t[r * b + i] = -tauI * sum
                }
            }
        }
        // Chunks of rows of Zᵀ: ~256 KiB each, a multiple of the GEMM's 6-row tile.
        let chunk = max(48, (32768 / max(1, n)) / 6 * 6)
        let chunks = (rowCount + chunk - 1) / chunk
        let workers = min(chunks, Threading.workerCount(for: rowCount * n * n, minimumPerWorker: 1 << 22))
        // Every worker's two panels in one allocation: one refusal before any work (allocated in the
        // workers, the peak would be the same, the failure later).
        let scratch = try FallibleAllocation.allocate(Double.self, count: workers * 2 * chunk * nb)
        defer { FallibleAllocation.free(scratch) }
        // A refused GEMM packing buffer ends its worker and is thrown after the join.
        try offsets.withUnsafeBufferPointer { offsets in
            try parallelForThrowing(workers: workers) { worker in
                let w = scratch + worker * 2 * chunk * nb, w2 = w + chunk * nb
                for c in partitionRange(chunks, parts: workers, index: worker) {
                    let r0 = c * chunk, rows = min(chunk, rowCount - r0)
                    var q = blocks - 1
                    while q >= 0 {
                        let k0 = q * nb, b = min(nb, count - k0), length = n - k0 - 1
                        let vt = UnsafePointer(vts + offsets[q]), t = UnsafePointer(ts + q * nb * nb)
                        // Z[:, k0+1...] −= ((Z[:, k0+1...] V) Tᵀ) Vᵀ on this chunk's rows.
                        let z = zt + r0 * n + k0 + 1
                        w.update(repeating: 0, count: rows * b)
                        try GEMMDriver<Double>(transA: false, transB: true, m: rows, n: b, k: length, alpha: 1,
                                               a: UnsafePointer(z), lda: n, b: vt, ldb: length, c: w, ldc: b)
                            .runChecked(workers: 1)
                        w2.update(repeating: 0, count: rows * b)
                        try GEMMDriver<Double>(transA: false, transB: true, m: rows, n: b, k: b, alpha: 1,
                                               a: UnsafePointer(w), lda: b, b: t, ldb: b, c: w2, ldc: b)
                            .runChecked(workers: 1)
                        try GEMMDriver<Double>(transA: false, transB: false, m: rows, n: length, k: b, alpha: -1,
                                               a: UnsafePointer(w2), lda: b, b: vt, ldb: length, c: z, ldc: n)
                            .runChecked(workers: 1)
                        q -= 1
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

/// row += alpha·x + beta·y, returning the updated row · v (one pass).
@inline(__always)
func updateThenDot(_ row: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Double>, _ alpha: Double,
                   _ y: UnsafePointer<Double>, _ beta: Double, _ v: UnsafePointer<Double>, _ count: Int) -> Double {
    typealias V = SIMD4<Double>
    let a = V(repeating: alpha), b = V(repeating: beta)
    var s0 = V(), s1 = V()
    var i = 0
    while i + 8 <= count {
        var r0: V = loadVector(row + i), r1: V = loadVector(row + i + 4)
        r0 = r0.addingProduct(a, loadVector(x + i) as V).addingProduct(b, loadVector(y + i) as V)
        r1 = r1.addingProduct(a, loadVector(x + i + 4) as V).addingProduct(b, loadVector(y + i + 4) as V)
        storeVector(r0, row + i)
        storeVector(r1, row + i + 4)
        s0 = s0.addingProduct(r0, loadVector(v + i) as V)
        s1 = s1.addingProduct(r1, loadVector(v + i + 4) as V)
        i += 8
    }
    var total = (s0 + s1).sum()
    while i < count {
        let r = row[i] + alpha * x[i] + beta * y[i]
        row[i] = r
        total += r * v[i]
        i += 1
    }
    return total
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

/// Plane rotations of rows (row, row + 1) of `Zᵀ`, recorded in order.
struct RotationLog {
    var rows: [Int32] = []
    var cs: [Double] = []
    var sn: [Double] = []
    let capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        rows.reserveCapacity(min(self.capacity, 1 << 16))
        cs.reserveCapacity(min(self.capacity, 1 << 16))
        sn.reserveCapacity(min(self.capacity, 1 << 16))
    }

    /// Records a rotation; `false` when the log is full (flush first).
    mutating func append(row: Int, c: Double, s: Double) -> Bool {
        guard rows.count < capacity else { return false }
        rows.append(Int32(truncatingIfNeeded: row)); cs.append(c); sn.append(s)
        return true
    }

    /// Applies every recorded rotation, in order, to `zt` (n × n) and empties the log.
    /// Each worker takes column chunks small enough for the whole chunk of Zᵀ to
    /// stay in cache while the rotation stream passes over it.
    mutating func flush(into zt: UnsafeMutablePointer<Double>, n: Int) {
        let count = rows.count
        guard count > 0 else { return }
        let width = max(8, min(n, (1 << 16) / max(1, n)) / 8 * 8)
        let chunks = (n + width - 1) / width
        let workers = min(chunks, Threading.workerCount(for: count * n, minimumPerWorker: 1 << 18))
        rows.withUnsafeBufferPointer { rows in
            cs.withUnsafeBufferPointer { cs in
                sn.withUnsafeBufferPointer { sn in
                    parallelFor(workers: workers) { worker in
                        for chunk in partitionRange(chunks, parts: workers, index: worker) {
                            let lo = chunk * width, size = min(width, n - lo)
                            for r in 0 ..< count {
                                let row = Int(rows[r])
                                rotate(zt + row * n + lo, zt + (row + 1) * n + lo, cs[r], sn[r], size)
                            }
                        }
                    }
                }
            }
        }
        rows.removeAll(keepingCapacity: true)
        cs.removeAll(keepingCapacity: true)
        sn.removeAll(keepingCapacity: true)
    }
}
