/// Eigenvectors of a symmetric tridiagonal matrix by inverse iteration
/// (after LAPACK `dstein`): for each eigenvalue `λ`, a few solves of
/// `(T − λI) x = b` with a pivoted tridiagonal LU, re-orthogonalized (modified
/// Gram–Schmidt) against the vectors of its cluster (eigenvalues closer than
/// a ``Tolerances/clusterGap``). O(n²) work plus O(n k²) per cluster of k,
/// instead of the O(n³) rotations of QL.
///
/// The result is verified (residuals and orthogonality inside clusters);
/// on failure the caller tries the next, more conservative ``Tolerances``
/// and finally falls back to QL with accumulated rotations.
enum TridiagonalEigenvectors {
    /// How vectors are grouped and what they must satisfy.
    ///
    /// For unit vectors `x_i`, `x_j` with residuals `r = T x − μ x` (any
    /// shifts `μ`), `(μ_i − μ_j) x_iᵀx_j = r_iᵀx_j − x_iᵀr_j`, so
    /// `|x_iᵀx_j| ≤ (‖r_i‖ + ‖r_j‖) / |μ_i − μ_j|`: vectors of different
    /// clusters (gap ≥ `clusterGap · ‖T‖`) whose residuals pass
    /// `residual · ‖T‖` are orthogonal to `2 · residual / clusterGap`
    /// without being orthogonalized against each other. Both presets bound
    /// that by 2e-8 (below float32 resolution).
    struct Tolerances {
        /// Eigenvalues closer than `clusterGap · ‖T‖` share a cluster.
        let clusterGap: Double
        /// Largest accepted `‖T x − λ x‖₂ / ‖T‖`.
        let residual: Double
        /// Solves per vector. From an eigenvalue accurate to ~ε‖T‖ one solve
        /// already amplifies the eigenvector's component by ~1/ε; the second
        /// refines it after the orthogonalization (LAPACK iterates up to 5
        /// times until the growth test passes; the residual check stands in).
        let iterations: Int

        /// Small clusters: inverse iteration's residuals are ~1e-15 ‖T‖, so
        /// a 1e-5 gap suffices. LAPACK's 1e-3 chains the whole spectrum of a
        /// Gram matrix into one cluster (eigenvalue spacing ~‖T‖/n) and
        /// turns Gram–Schmidt into O(n³) level-1 work.
        static let tight = Tolerances(clusterGap: 1e-5, residual: 1e-13, iterations: 2)
        /// LAPACK `dstein`'s grouping, for vectors whose residuals miss `tight`.
        static let conservative = Tolerances(clusterGap: 1e-3, residual: 1e-11, iterations: 3)
    }

    /// Writes the unit eigenvector of `values[j]` (ascending) into row `j` of
    /// `zt` (n × n) for T = tridiag(e, d, e) (`e[i] = T[i+1, i]`). Returns false
    /// when the vectors fail the check.
    ///
    /// Rows of eigenvalues `<= negligible` (the first `t`, values ascending) are
    /// filled with an orthonormal basis of the complement of the others.
    ///
    /// With `first > 0` only rows `first ..< n` are computed and checked (and
    /// the rows of the rest of a cluster that straddles `first`, which its
    /// vectors are orthogonalized against); rows below are left unspecified.
    /// - Throws: `.outOfMemory` if the workers' LU scratch cannot be allocated.
    static func inverseIteration(d: [Double], e: [Double], values: [Double],
                                 zt: UnsafeMutablePointer<Double>, n: Int,
                                 negligible: Double = -Double.infinity,
                                 tolerances: Tolerances = .conservative, first: Int = 0) throws -> Bool {
        var norm = 0.0
        for i in 0 ..< n {
            norm = max(norm, abs(d[i]) + (i > 0 ? abs(e[i - 1]) : 0) + (i + 1 < n ? abs(e[i]) : 0))
        }
        guard norm > 0 else {
            zt.initialize(repeating: 0, count: n * n)
            for i in 0 ..< n { zt[i * n + i] = 1 }
            return true
        }
        let eps = Double.ulpOfOne
        let clusterGap = tolerances.clusterGap * norm
        let perturbation = 10 * eps * norm
        // Eigenvalues up to `negligible` come first (ascending): rows 0 ..< skipped.
        let skipped = values.prefix { $0 <= negligible }.count
        // Cluster starts, then clusters solved independently (in parallel).
        var starts = [skipped]
        for j in skipped + 1 ..< max(skipped + 1, n) where values[j] - values[j - 1] > clusterGap { starts.append(j) }
        starts.append(n)
        // Only the clusters from the one holding row `first` on (all of them when first ≤ skipped).
        if let straddling = starts.lastIndex(where: { $0 <= first }), straddling > 0 {
            starts.removeFirst(straddling)
        }
        let clusters = starts.count - 1
        let workers = min(clusters, Threading.workerCount(for: n * n, minimumPerWorker: 1 << 14))
        try d.withUnsafeBufferPointer { d in
            try e.withUnsafeBufferPointer { e in
                // Each worker allocates its own LU scratch (5n doubles); a refusal ends that worker and is thrown after the join.
                try parallelForThrowing(workers: workers) { worker in
                    let solver = try TridiagonalSolver(n: n)
                    // Round-robin clusters so that big and small ones mix.
                    var c = worker
                    while c < clusters {
                        var previous = -Double.infinity
                        for j in starts[c] ..< starts[c + 1] {
                            var lambda = values[j]
                            if lambda - previous < perturbation { lambda = previous + perturbation }
                            previous = lambda
                            solver.factor(d: d, e: e, shift: lambda, tiny: eps * norm)
                            let x = zt + j * n
                            // Uniform in (-1, 1) as LAPACK's dlarnv; seeded by the eigenvalue's
                            // index: the same vectors whatever the thread count.
                            var generator = GaussianGenerator(seed: 0x1be5_0000 &+ UInt64(j))
                            for i in 0 ..< n { x[i] = 2 * generator.uniform() - 1 }
                            for _ in 0 ..< tolerances.iterations {
                                solver.solve(x)
                                for q in starts[c] ..< j {
                                    let other = zt + q * n
                                    axpy(-dot(other, x, n), other, x, n)
                                }
                                let length = dot(x, x, n).squareRoot()
                                let scale = length > 0 && length.isFinite ? 1 / length : 0
                                for i in 0 ..< n { x[i] *= scale }
                            }
                        }
                        c += workers
                    }
                }
            }
        }
        if try skipped > 0 && first < skipped && !complete(zt, n: n, first: skipped) { return false }
        // Residuals ‖T z − λ z‖₂ ≤ residual · ‖T‖ bound the inner products of
        // vectors of different clusters (see Tolerances) by 2e-8; inside a
        // cluster they are checked directly.
        for j in starts[0] ..< n {
            let x = zt + j * n
            var residual = 0.0
            for i in 0 ..< n {
                var r = (d[i] - values[j]) * x[i]
                if i > 0 { r += e[i - 1] * x[i - 1] }
                if i + 1 < n { r += e[i] * x[i + 1] }
                residual += r * r
            }
            guard residual.isFinite, residual.squareRoot() <= tolerances.residual * norm,
                  abs(dot(x, x, n) - 1) <= 1e-12 else { return false }
        }
        for c in 0 ..< clusters {
            for j in starts[c] ..< starts[c + 1] {
                for q in starts[c] ..< j where abs(dot(zt + q * n, zt + j * n, n)) > 1e-10 { return false }
            }
        }
        return true
    }

    /// Fills rows `0 ..< first` of `zt` with an orthonormal basis of the
    /// complement of rows `first ..< n` (see
    /// ``HouseholderQR/orthonormalComplement(of:basisCount:length:count:into:)``), and
    /// checks it. Returns false if the check fails.
    static func complete(_ zt: UnsafeMutablePointer<Double>, n: Int, first: Int) throws -> Bool {
        let known = n - first
        let completion = try FallibleAllocation.allocate(Double.self, count: first * n, "the eigenvectors' completion")
        defer { FallibleAllocation.free(completion) }
        try HouseholderQR.orthonormalComplement(of: zt + first * n, basisCount: known, length: n,
                                       count: first, into: completion)
        zt.update(from: completion, count: first * n)
        for j in 0 ..< first {
            guard abs(dot(zt + j * n, zt + j * n, n) - 1) <= 1e-12 else { return false }
            for q in first ..< n where abs(dot(zt + j * n, zt + q * n, n)) > 1e-10 { return false }
        }
        return true
    }
}

/// LU with partial pivoting of a shifted tridiagonal matrix `T − λI`
/// (LAPACK `dgttrf` / `dgtts2`), zero pivots replaced by `tiny`. The
/// pivots are stored as reciprocals (the solve multiplies), in raw
/// buffers: the solve is a serial recurrence, so every bounds check and
/// division shows.
final class TridiagonalSolver {
    let n: Int
    let lower: UnsafeMutablePointer<Double>, inverseDiagonal: UnsafeMutablePointer<Double>
    let upper: UnsafeMutablePointer<Double>, upper2: UnsafeMutablePointer<Double>
    let swapped: UnsafeMutablePointer<Bool>

    /// - Throws: `.outOfMemory` if the scratch cannot be allocated.
    init(n: Int) throws {
        self.n = n
        let count = max(1, n)
        // One block for the four Double arrays: a refusal of the second leaves only it to free.
        let block = try FallibleAllocation.allocate(Double.self, count: 4 * count, "inverse iteration's LU")
        do {
            swapped = try FallibleAllocation.allocate(Bool.self, count: count, "inverse iteration's LU")
        } catch {
            FallibleAllocation.free(block)
            throw error
        }
        lower = block; inverseDiagonal = block + count; upper = block + 2 * count; upper2 = block + 3 * count
    }

    deinit {
        FallibleAllocation.free(lower)
        FallibleAllocation.free(swapped)
    }

    func factor(d: UnsafeBufferPointer<Double>, e: UnsafeBufferPointer<Double>, shift: Double, tiny: Double) {
        let diagonal = inverseDiagonal   // holds the pivots until the last loop inverts them
        for i in 0 ..< n {
            diagonal[i] = d[i] - shift
            lower[i] = i + 1 < n ? e[i] : 0
            upper[i] = i + 1 < n ? e[i] : 0
            upper2[i] = 0
            swapped[i] = false
        }
        for i in 0 ..< max(0, n - 1) {
            if abs(diagonal[i]) >= abs(lower[i]) {
                if diagonal[i] == 0 { diagonal[i] = tiny }
                let factor = lower[i] / diagonal[i]
                lower[i] = factor
                diagonal[i + 1] -= factor * upper[i]
            } else {
                let factor = diagonal[i] / lower[i]
                diagonal[i] = lower[i]
                lower[i] = factor
                let temp = upper[i]
                upper[i] = diagonal[i + 1]
                diagonal[i + 1] = temp - factor * diagonal[i + 1]
                if i + 2 < n {
                    upper2[i] = upper[i + 1]
                    upper[i + 1] = -factor * upper[i + 1]
                }
                swapped[i] = true
            }
        }
        for i in 0 ..< n {
            var pivot = diagonal[i]
            if abs(pivot) < tiny { pivot = pivot < 0 ? -tiny : tiny }
            diagonal[i] = 1 / pivot
        }
    }

    /// Overwrites `b` with `(T − λI)⁻¹ b`, rescaling to avoid overflow.
    func solve(_ b: UnsafeMutablePointer<Double>) {
        for i in 0 ..< max(0, n - 1) {
            if swapped[i] {
                let temp = b[i]
                b[i] = b[i + 1]
                b[i + 1] = temp - lower[i] * b[i]
            } else {
                b[i + 1] -= lower[i] * b[i]
            }
        }
        var i = n - 1
        var largest = 0.0
        while i >= 0 {
            var value = b[i]
            if i + 1 < n { value -= upper[i] * b[i + 1] }
            if i + 2 < n { value -= upper2[i] * b[i + 2] }
            value *= inverseDiagonal[i]
            b[i] = value
            largest = max(largest, abs(value))
            if largest > 1e150 {
                // Rescale what is done so far; the direction is all that matters.
                for k in i ..< n { b[k] *= 1e-150 }
                for k in 0 ..< i { b[k] *= 1e-150 }
                largest *= 1e-150
            }
            i -= 1
        }
    }
}
