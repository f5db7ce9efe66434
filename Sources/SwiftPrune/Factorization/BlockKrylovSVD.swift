/// Randomized block Krylov SVD (Musco & Musco 2015, "Randomized Block Krylov
/// Methods for Stronger and Faster Approximate Singular Value Decomposition"),
/// the default method of ``RandomizedSVD``.
///
/// Subspace (power) iteration keeps only its last block `(XXᵀ)^q X Ω`; the
/// Krylov method keeps every block `[XΩ, (XXᵀ)XΩ, …, (XXᵀ)^(t-1) XΩ]` and
/// takes the best rank-`rank` approximation within their span
/// (Rayleigh–Ritz). Its error shrinks like `exp(-t·√gap)` instead of
/// `exp(-q·gap)`, and for a basis of a given size (which fixes the product
/// work: two products per block column) more, smaller blocks reach a lower
/// error: see ``krylovShape(rank:oversample:iterations:)``.
///
/// The basis is built block-Lanczos style with full reorthogonalization: every
/// new block `Y_{i+1} = X · W_i`, `W_i = orth(Xᵀ Y_i)`, is projected off the
/// previous blocks twice (block classical Gram–Schmidt, "twice is enough"),
/// then orthonormalized by CholeskyQR2. With an orthonormal basis `K`, the
/// products `Z_i = Xᵀ Y_i` that drive the iteration are also the rows of
/// `B = Kᵀ X`, and the Rayleigh–Ritz step needs the Gram matrix
/// `G = B Bᵀ = Kᵀ X Xᵀ K`. `X Xᵀ K_i` lies in the span of `K_{≤i+1}`, so
/// `G` is block tridiagonal: only its band `Z_{i-1..i} Z_iᵀ` is computed as
/// the iteration goes (the blocks beyond are zero but for Float rounding,
/// ~6e-8 ‖X‖², the size of the rounding in the band itself). That band gives
/// the first projection's coefficients for free (the block Lanczos
/// recurrence): `K_{i-1..i} (X W_iᵀ) = Z_{i-1..i} W_iᵀ = G_{·i} L⁻ᵀ` where
/// `G_ii = L Lᵀ` and `W_i = L⁻¹ Z_i` (so `W_i` needs no Gram matrix of its
/// own either); the second projection reads all of `K` and the new block,
/// and removes what rounding left along the older blocks. The
/// leading `rank` eigenvectors `E` of `G` (in Double) give `Vᵀ = Eᵀ B / σ`
/// and `Uᵀ = Eᵀ Kᵀ`; all the big products are Float GEMMs.
///
/// Rounding: `G` is accumulated in Float (as every product of the method
/// is), so the Ritz vectors are accurate to Float precision relative to
/// `σ_max`, like the products that made `B`; `Vᵀ` is made orthonormal by one
/// CholeskyQR pass in Float (the dense SVD's Double path when that pass is
/// ill-conditioned or rows are null).
extension RandomizedSVD {
    /// The Krylov block size and number of blocks for `rank`, `oversample`
    /// and `iterations` (scikit-learn's number of power iterations `q`):
    ///
    /// - `q == 0`: one block of `rank + oversample` columns (the plain
    ///   randomized range finder);
    /// - otherwise a basis of at least `max(rank + oversample, rank · (4 + q) / 4)`
    ///   columns (twice the rank at `q = 4`, 2.75 times at `q = 7`) in blocks of
    ///   `max(⌈rank / 8⌉, min(16, ⌈rank / 2⌉))` columns, and at least `q + 1`
    ///   blocks (never a lower polynomial degree than scikit-learn's).
    ///
    /// Measured in float64 NumPy on the benchmark's 2048² weight-like matrix
    /// (σ_i = 1/√(1+i) plus noise): rank 256, `q = 4` (16 blocks of 32) error
    /// 0.51480 against scikit-learn's 0.51639 (optimum 0.51430), with 1024
    /// product columns against scikit-learn's 2660; rank 64, `q = 7` (11 blocks of
    /// 16) 0.65894 against 0.65907 (optimum 0.65892) with 352 against 1184. Blocks of half
    /// the rank with `q + 1` blocks (the previous choice) needed 1280 / 512 columns for 0.51515 / 0.65892.
    public static func krylovShape(rank: Int, oversample: Int, iterations: Int) -> (block: Int, blocks: Int) {
        let (total, overflow) = rank.addingReportingOverflow(oversample)
        let l = overflow ? Int.max / 2 : max(1, total)
        guard iterations > 0 else { return (l, 1) }
        let scaled = rank.multipliedReportingOverflow(by: 4 + min(iterations, 1 << 20))
        let target = max(l, scaled.overflow ? Int.max / 2 : scaled.partialValue / 4)
        let block = max(1, max((rank + 7) / 8, min(16, (rank + 1) / 2)))
        let (sum, huge) = iterations.addingReportingOverflow(1)
        let blocks = max(huge ? Int.max : sum, target / block + (target % block == 0 ? 0 : 1))
        return (block, blocks)
    }

    /// Block Krylov rank-`rank` SVD of `x` (`rows × cols`, rows ≥ cols), read
    /// through `timesX` (`X · basisᵀ` by columns: `rows × count`, the layout the
    /// projections work in) and `timesXt` (`basis · X` as rows: `count × cols`). Fills `leftRows` (`rank × rows`, rows of
    /// Uᵀ), `values` (`rank`) and `rightRows` (`rank × cols`, rows of Vᵀ).
    /// The caller guarantees `rank ≤ blocks · block ≤ cols`.
    static func krylov(
        rows: Int, cols: Int, rank: Int, block b: Int, blocks: Int, seed: UInt64,
        timesX: (UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) throws -> Void,
        timesXt: (UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) throws -> Void,
        leftRows: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Double>,
        rightRows: UnsafeMutablePointer<Float>
    ) throws {
        let capacity = blocks * b
        // The big arrays below (MiBs each) come from HugePageScratch: fresh 4 KiB pages
        // would fault thousands of times per call.
        // K (capacity × rows): the orthonormal basis rows; Z (capacity × cols): rows of B = Kᵀ X;
        // G (capacity × capacity): B Bᵀ, filled one block column (and its mirror row) per block.
        let kt = try HugePageScratch.allocate(Float.self, count: capacity * rows)
        defer { FallibleAllocation.free(kt) }
        let zt = try HugePageScratch.allocate(Float.self, count: capacity * cols)
        defer { FallibleAllocation.free(zt) }
        let gram = try HugePageScratch.allocate(Float.self, count: capacity * capacity)
        defer { FallibleAllocation.free(gram) }
        // Only G's band is computed (see the type's comment): the rest stays zero.
        gram.update(repeating: 0, count: capacity * capacity)
        let work = try FallibleAllocation.allocate(Float.self, count: b * max(rows, cols))
        defer { FallibleAllocation.free(work) }
        let column = try FallibleAllocation.allocate(Float.self, count: b * capacity)
        defer { FallibleAllocation.free(column) }
        let coefficients = try FallibleAllocation.allocate(Float.self, count: b * capacity)
        defer { FallibleAllocation.free(coefficients) }
        let inverse = try FallibleAllocation.allocate(Float.self, count: b * b)
        defer { FallibleAllocation.free(inverse) }
        // K also by columns (rows × capacity): the re-orthogonalization's products with K,
        // whose results are thin, then read it in place as GEMM's A (the direct-A kernel, ≤ 128
        // result columns) — as rows it would be GEMM's B, packed (copied) on every call.
        let kc = try HugePageScratch.allocate(Float.self, count: rows * capacity)
        defer { FallibleAllocation.free(kc) }
        let nextColumns = try FallibleAllocation.allocate(Float.self, count: rows * b)
        defer { FallibleAllocation.free(nextColumns) }
        // Ωᵀ: b × cols Gaussian rows; Y₀ = orth(X Ω).
        var generator = GaussianGenerator(seed: seed)
        for i in 0 ..< b * cols { work[i] = Float(generator.next()) }
        try timesX(work, b, nextColumns)
        transposeBlocked(nextColumns, rows: rows, cols: b, into: kt)
        try CholeskyQR.orthonormalizeRows(kt, count: b, length: rows, passes: 2)
        transposeBlocked(kt, rows: b, cols: rows, into: kc, dstStride: capacity)
        var blocksUsed = blocks
        iterate: for i in 0 ..< blocks {
            let y = kt + i * b * rows, z = zt + i * b * cols
            try timesXt(y, b, z)
            // G's block column i within the band: Z_{i-1..i} Z_iᵀ (band × b, rows `first ..< done`
            // of G), mirrored into block row i.
            let done = (i + 1) * b, first = max(0, done - 2 * b), band = done - first
            try gemm(transA: false, transB: true, m: band, n: b, k: cols, alpha: 1, a: zt + first * cols, lda: cols,
                     b: z, ldb: cols, beta: 0, c: column, ldc: b)
            for r in first ..< done {
                for c in 0 ..< b where r < i * b || r - i * b <= c {
                    gram[r * capacity + i * b + c] = column[(r - first) * b + c]
                    gram[(i * b + c) * capacity + r] = column[(r - first) * b + c]
                }
            }
            guard i < blocks - 1 else { break }
            // W_i = orth(Z_i): the renormalized block spans the same space (XXᵀ Y_i)
            // without its condition number growing with each iteration. Its first
            // projection's coefficients K_{i-1..i} (X W_iᵀ) = Z_{i-1..i} W_iᵀ: from G
            // when W_i = L⁻¹ Z_i.
            if try CholeskyQR.inverseFactor(gram: gram + i * b * capacity + i * b, ld: capacity, count: b,
                                        limit: CholeskyQR.maximumCondition, into: inverse) {
                try gemm(transA: false, transB: false, m: b, n: cols, k: b, alpha: 1, a: inverse, lda: b,
                         b: z, ldb: cols, beta: 0, c: work, ldc: cols)
                try gemm(transA: false, transB: true, m: band, n: b, k: b, alpha: 1, a: column, lda: b,
                         b: inverse, ldb: b, beta: 0, c: coefficients, ldc: b)
            } else {
                // Z_i (nearly) rank-deficient: Householder QR inside CholeskyQR, and
                // the coefficients by a product.
                work.update(from: z, count: b * cols)
                try CholeskyQR.orthonormalizeRows(work, count: b, length: cols, passes: 1)
                try gemm(transA: false, transB: true, m: band, n: b, k: cols, alpha: 1, a: zt + first * cols,
                         lda: cols, b: work, ldb: cols, beta: 0, c: coefficients, ldc: b)
            }
            let next = y + b * rows
            // Both projections by columns: next (as rows × b) −= K C, with K by columns
            // as the direct-A kernel's A; round 1's C = K next reads K by rows the same way.
            try timesX(work, b, nextColumns)
            var before = 0.0
            for r in 0 ..< b * rows { before += Double(nextColumns[r]) * Double(nextColumns[r]) }
            // Round 0 (the block Lanczos recurrence): next -= K_{i-1..i} C with the
            // coefficients above; the older blocks' coefficients are zero but for rounding,
            // which round 1 removes.
            try gemm(transA: false, transB: false, m: rows, n: b, k: band, alpha: -1, a: kc + first, lda: capacity,
                     b: coefficients, ldb: b, beta: 1, c: nextColumns, ldc: b)
            // The whole block already lies in the span (to Float rounding): the
            // Krylov space is invariant (an exactly low-rank matrix), and blocks
            // of pure rounding noise would only be made orthogonal by luck.
            var after = 0.0
            for r in 0 ..< b * rows { after += Double(nextColumns[r]) * Double(nextColumns[r]) }
            if done >= rank && !(after > 1e-8 * before) { blocksUsed = i + 1; break iterate }
            // Round 1: C = Kᵀ next (done × b), next -= K C, removing what round 0's
            // rounding (and the cancellation) left in the span of K. When the block is
            // (nearly) rank-deficient, CholeskyQR hands it to Householder QR, whose extra
            // rows come from rounding noise that is not orthogonal to K: those unit rows
            // get one more projection and orthonormalization.
            for attempt in 0 ..< 2 {
                if attempt > 0 { transposeBlocked(next, rows: b, cols: rows, into: nextColumns) }
                try gemm(transA: false, transB: false, m: done, n: b, k: rows, alpha: 1, a: kt, lda: rows,
                         b: nextColumns, ldb: b, beta: 0, c: coefficients, ldc: b)
                try gemm(transA: false, transB: false, m: rows, n: b, k: done, alpha: -1, a: kc, lda: capacity,
                         b: coefficients, ldb: b, beta: 1, c: nextColumns, ldc: b)
                transposeBlocked(nextColumns, rows: rows, cols: b, into: next)
                if try CholeskyQR.orthonormalizeRows(next, count: b, length: rows, passes: 2) { break }
            }
            transposeBlocked(next, rows: b, cols: rows, into: kc + done, dstStride: capacity)
        }
        // Rayleigh–Ritz: B = Kᵀ X = Z (d × cols); G = B Bᵀ = E Λ Eᵀ in Double.
        let d = blocksUsed * b
        let gd = try HugePageScratch.allocate(Double.self, count: d * d)
        defer { FallibleAllocation.free(gd) }
        for r in 0 ..< d {
            for c in 0 ..< d { gd[r * d + c] = Double(gram[r * capacity + c]) }
        }
        _ = try SymmetricEigen.decompose(gd, n: d, top: rank)
        // Eigenvectors come as rows, ascending (only the last `rank` computed): the leading
        // `rank`, descending, as the rows of Eᵀ (rank × d) for the products below.
        let top = try FallibleAllocation.allocate(Float.self, count: rank * d)
        defer { FallibleAllocation.free(top) }
        for j in 0 ..< rank {
            let source = gd + (d - 1 - j) * d
            for c in 0 ..< d { top[j * d + c] = Float(source[c]) }
        }
        // Vᵀ rows: e_j B / ‖e_j B‖ (the norm is σ_j), i.e. Eᵀ Z; Uᵀ rows: e_j K, i.e. Eᵀ Kᵀ:
        // both as GEMMs with `rank` rows on the rows of Z and K as stored (no transposes).
        try gemm(transA: false, transB: false, m: rank, n: cols, k: d, alpha: 1, a: top, lda: d,
                 b: zt, ldb: cols, beta: 0, c: rightRows, ldc: cols)
        var norms = try [Double](fallibleRepeating: 0, count: rank)
        for j in 0 ..< rank {
            let row = rightRows + j * cols
            var sum = 0.0
            for c in 0 ..< cols { sum += Double(row[c]) * Double(row[c]) }
            norms[j] = sum.squareRoot()
        }
        // Descending by the computed σ (rounding may swap near-equal eigenvalues).
        let order = (0 ..< rank).sorted { norms[$0] > norms[$1] || (norms[$0] == norms[$1] && $0 < $1) }
        if order != Array(0 ..< rank) {
            try SingularValueDecomposition.permuteRows(rightRows, order, length: cols)
            try SingularValueDecomposition.permuteRows(top, order, length: d)
            norms = order.map { norms[$0] }
        }
        for j in 0 ..< rank { values[j] = norms[j] }
        // e_j B are orthogonal up to G's Float rounding (~6e-8 σ_max² / (σ_i σ_j)): one
        // CholeskyQR pass in Float (rows in descending σ, so each row only loses its
        // components along larger ones; L's positive diagonal keeps every sign).
        let largest = norms.first ?? 0
        let negligible = norms.contains { !($0 > 1e-6 * largest) }
        var orthonormal = false
        if !negligible {
            for j in 0 ..< rank {
                let scale = Float(1 / norms[j]), row = rightRows + j * cols
                for c in 0 ..< cols { row[c] *= scale }
            }
            orthonormal = try CholeskyQR.pass(rightRows, count: rank, length: cols,
                                              limit: CholeskyQR.maximumCondition)
        }
        if !orthonormal {
            // Null rows (an exactly low-rank matrix) or a wide spread of σ: the Double
            // path of the dense SVD (Cholesky QR passes, else Gram–Schmidt, and an
            // orthonormal completion of the null rows).
            let wide = try FallibleAllocation.allocate(Double.self, count: rank * cols)
            defer { FallibleAllocation.free(wide) }
            for i in 0 ..< rank * cols { wide[i] = Double(rightRows[i]) }
            try SingularValueDecomposition.orthonormalizeRows(
                wide, count: rank, length: cols, norms: negligible ? norms : [Double](fallibleRepeating: 1, count: rank))
            for i in 0 ..< rank * cols { rightRows[i] = Float(wide[i]) }
        }
        try gemm(transA: false, transB: false, m: rank, n: rows, k: d, alpha: 1, a: top, lda: d,
                 b: kt, ldb: rows, beta: 0, c: leftRows, ldc: rows)
    }
}
