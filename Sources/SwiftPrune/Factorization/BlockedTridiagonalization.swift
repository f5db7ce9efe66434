/// Blocked Householder tridiagonalization (LAPACK `dsytrd` / `dlatrd`,
/// lower storage, transcribed to row-major upper storage).
///
/// The unblocked reduction (``SymmetricEigen/tridiagonalize(_:n:d:e:tau:from:)``)
/// reads *and writes* the whole trailing matrix once per reflector (BLAS-2,
/// memory-bound). Here `panelWidth` reflectors are generated at a time: each
/// needs only a symmetric matrix–vector product with the trailing matrix as
/// it was at the start of the panel (reading one triangle, writing nothing),
/// corrected by the panel's earlier reflectors `V` and their `W`; the
/// trailing matrix is then updated once per panel, `A −= V Wᵀ + W Vᵀ`, by
/// one GEMM of depth `2 · panelWidth` restricted to the upper triangle
/// (level 3). The reflectors, `d`, `e` and `tau` are those of the unblocked
/// reduction up to rounding (the updates are summed in another order).
extension SymmetricEigen {
    /// Reflectors per panel.
    static let panelWidth = 32
    /// Trailing matrices up to this size are finished by the unblocked reduction.
    static let unblockedSize = 128

    /// Same contract as ``tridiagonalize(_:n:d:e:tau:from:)`` (from 0): `a` is
    /// the full symmetric matrix on entry; on return its upper triangle holds
    /// the reflectors (row `k`, entries `k+1 ..< n`), its lower triangle is
    /// scratch.
    static func tridiagonalizeBlocked(_ a: UnsafeMutablePointer<Double>, n: Int,
                                      d: inout [Double], e: inout [Double], tau: inout [Double]) throws {
        let nb = panelWidth
        var k0 = 0
        if n > unblockedSize {
            // Panel storage, ld = n: V (nb rows), W (nb rows), V again (nb rows), so that
            // [V; W]ᵀ [W; V] = Vᵀ W + Wᵀ V (rows as vectors) is one GEMM of depth 2 nb.
            let panel = try FallibleAllocation.allocate(Double.self, count: 3 * nb * n)
            defer { FallibleAllocation.free(panel) }
            let maxWorkers = Threading.threadCount
            let partial = try FallibleAllocation.allocate(Double.self, count: maxWorkers * n)
            defer { FallibleAllocation.free(partial) }
            while n - k0 > unblockedSize {
                let size = n - k0
                reducePanel(a, n: n, k0: k0, size: size, nb: nb, panel: panel, partial: partial,
                                maxWorkers: maxWorkers, d: &d, e: &e, tau: &tau)
                // Trailing update of the upper triangle: A22 −= Σ_j V_jᵀ W_j + W_jᵀ V_j.
                let vs = panel, ws = panel + nb * size, vs2 = panel + 2 * nb * size
                vs2.update(from: vs, count: nb * size)
                let rest = size - nb
                let (work, overflow) = (rest * rest).multipliedReportingOverflow(by: nb)
                let workers = overflow ? Threading.threadCount
                    : Threading.workerCount(for: work, minimumPerWorker: 1 << 21)
                var driver = GEMMDriver<Double>(
                    transA: true, transB: false, m: rest, n: rest, k: 2 * nb, alpha: -1,
                    a: UnsafePointer(vs + nb), lda: size, b: UnsafePointer(ws + nb), ldb: size,
                    c: a + (k0 + nb) * n + k0 + nb, ldc: n)
                driver.upperOnly = true
                try driver.runChecked(workers: workers)
                k0 += nb
            }
            // The unblocked reduction reads full rows: mirror the upper triangle of the rest.
            for r in k0 ..< n {
                for c in k0 ..< r { a[r * n + c] = a[c * n + r] }
            }
        }
        try tridiagonalize(a, n: n, d: &d, e: &e, tau: &tau, from: k0)
    }

    /// Generates reflectors `k0 ..< k0 + nb` and their `W` rows (`dlatrd`):
    /// `panel` rows `0 ..< nb` receive `V` (row `i` = `v_{k0+i}` on local
    /// coordinates `0 ..< size`, zero up to its leading 1 at `i + 1`), rows
    /// `nb ..< 2 nb` the matching `W`.
    static func reducePanel(_ a: UnsafeMutablePointer<Double>, n: Int, k0: Int, size: Int, nb: Int,
                            panel: UnsafeMutablePointer<Double>, partial: UnsafeMutablePointer<Double>,
                            maxWorkers: Int, d: inout [Double], e: inout [Double], tau: inout [Double]) {
        let vs = panel, ws = panel + nb * size
        vs.update(repeating: 0, count: 2 * nb * size)
        for i in 0 ..< nb {
            let k = k0 + i
            let row = a + k * n + k0   // local row i; entries i ..< size are valid
            // Row i of the panel (= column i) as the earlier reflectors of the panel left it.
            for j in 0 ..< i {
                let vj = vs + j * size, wj = ws + j * size
                rank2Update(row + i, wj + i, -vj[i], vj + i, -wj[i], size - i)
            }
            d[k] = row[i]
            let length = size - i - 1
            let x = row + i + 1
            let (beta, t) = householderReflector(x, length: length)
            e[k] = beta
            tau[k] = t
            let v = vs + i * size + i + 1
            v.update(from: x, count: length)
            let p = ws + i * size + i + 1
            guard t != 0 else { continue }   // H = I: W row stays zero
            // p = A22 v, A22 = local rows/columns i+1 ..< size as of the panel's start (upper triangle).
            symmetricProduct(a + (k0 + i + 1) * n + k0 + i + 1, lda: n, count: length, v: UnsafePointer(v),
                             into: p, partial: partial, maxWorkers: maxWorkers)
            // Minus the panel's pending update applied to v: (V Wᵀ + W Vᵀ) v.
            for j in 0 ..< i {
                let vj = vs + j * size + i + 1, wj = ws + j * size + i + 1
                let wv = dot(wj, UnsafePointer(v), length), vv = dot(vj, UnsafePointer(v), length)
                rank2Update(p, vj, -wv, wj, -vv, length)
            }
            // w = t p − (t²/2)(pᵀv) v
            for q in 0 ..< length { p[q] *= t }
            let kappa = 0.5 * t * dot(p, UnsafePointer(v), length)
            axpy(-kappa, v, p, length)
        }
    }

    /// `y = A x` for the symmetric `count × count` matrix whose upper
    /// triangle is stored row-major at `a` (row `r`, entries `r ..< count`),
    /// reading each stored entry once. Rows are split over workers by
    /// triangle area; each worker sums its column contributions privately.
    static func symmetricProduct(_ a: UnsafePointer<Double>, lda: Int, count: Int, v: UnsafePointer<Double>,
                                 into y: UnsafeMutablePointer<Double>, partial: UnsafeMutablePointer<Double>,
                                 maxWorkers: Int) {
        let workers = min(maxWorkers, Threading.workerCount(for: count * count / 2, minimumPerWorker: 1 << 16))
        if workers <= 1 {
            y.update(repeating: 0, count: count)
            symmetricRows(a, lda: lda, count: count, rows: 0 ..< count, v: v, y: y)
            return
        }
        parallelFor(workers: workers) { worker in
            let mine = partial + worker * count
            mine.update(repeating: 0, count: count)
            // Rows [start, end) with equal shares of the triangle: start = count (1 − √(1 − w / W)).
            func boundary(_ w: Int) -> Int {
                w >= workers ? count
                    : Int((Double(count) * (1 - (1 - Double(w) / Double(workers)).squareRoot())).rounded())
            }
            symmetricRows(a, lda: lda, count: count, rows: boundary(worker) ..< boundary(worker + 1), v: v, y: mine)
        }
        y.update(from: partial, count: count)
        for w in 1 ..< workers { axpy(1, partial + w * count, y, count) }
    }
}

/// `y += A[rows, :] v` and the mirror images, for stored upper-triangle rows
/// `rows` of the symmetric `count × count` matrix at `a` (see
/// `symmetricProduct`): two rows per pass, so each load and store of `y`
/// and each load of `v` serves two matrix entries.
@inline(__always)
func symmetricRows(_ a: UnsafePointer<Double>, lda: Int, count: Int, rows: Range<Int>,
                   v: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>) {
    typealias V = SIMD4<Double>
    var r = rows.lowerBound
    while r + 2 <= rows.upperBound {
        let row0 = a + r * lda + r, row1 = a + (r + 1) * lda + r + 1   // both from their diagonal
        let x0 = v[r], x1 = v[r + 1]
        // Columns r and r + 1 by hand, then c ≥ r + 2 together.
        var total0 = row0[0] * x0 + row0[1] * x1
        var total1 = row1[0] * x1
        y[r + 1] += row0[1] * x0
        let p0 = row0 + 2, p1 = row1 + 1, length = count - r - 2
        let xs = v + r + 2, ys = y + r + 2
        let scale0 = V(repeating: x0), scale1 = V(repeating: x1)
        var s0 = V(), s1 = V()
        var c = 0
        while c + 4 <= length {
            let e0: V = loadVector(p0 + c), e1: V = loadVector(p1 + c), xv: V = loadVector(xs + c)
            s0 = s0.addingProduct(e0, xv)
            s1 = s1.addingProduct(e1, xv)
            storeVector((loadVector(ys + c) as V).addingProduct(scale0, e0).addingProduct(scale1, e1), ys + c)
            c += 4
        }
        total0 += s0.sum()
        total1 += s1.sum()
        while c < length {
            total0 += p0[c] * xs[c]
            total1 += p1[c] * xs[c]
            ys[c] += p0[c] * x0 + p1[c] * x1
            c += 1
        }
        y[r] += total0
        y[r + 1] += total1
        r += 2
    }
    if r < rows.upperBound { symmetricRow(a + r * lda + r, v + r, y + r, count - r) }
}

/// One stored row of a symmetric matrix from its diagonal: `row[0]` is the
/// diagonal entry. `y[0] += row · x` (all entries), `y[c] += row[c] · x[0]`
/// for `c ≥ 1` (the entries' mirror images below the diagonal).
@inline(__always)
func symmetricRow(_ row: UnsafePointer<Double>, _ x: UnsafePointer<Double>,
                  _ y: UnsafeMutablePointer<Double>, _ count: Int) {
    typealias V = SIMD4<Double>
    let x0 = x[0]
    var total = row[0] * x0
    let scale = V(repeating: x0)
    var s0 = V(), s1 = V()
    var c = 1
    while c + 8 <= count {
        let r0: V = loadVector(row + c), r1: V = loadVector(row + c + 4)
        s0 = s0.addingProduct(r0, loadVector(x + c) as V)
        s1 = s1.addingProduct(r1, loadVector(x + c + 4) as V)
        storeVector((loadVector(y + c) as V).addingProduct(scale, r0), y + c)
        storeVector((loadVector(y + c + 4) as V).addingProduct(scale, r1), y + c + 4)
        c += 8
    }
    total += (s0 + s1).sum()
    while c < count {
        total += row[c] * x[c]
        y[c] += row[c] * x0
        c += 1
    }
    y[0] += total
}
