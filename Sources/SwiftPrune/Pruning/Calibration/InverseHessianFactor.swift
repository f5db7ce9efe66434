/// The upper Cholesky factor `U` of the damped inverse Hessian `H⁻¹` that
/// GPTQ and SparseGPT spread their errors with, in Float, as the papers'
/// reference code computes it in float32.
///
/// `H` is read (never written) from a Double `n × n` row-major matrix, in
/// the column order `order` (act-order; the identity when `nil`). A column
/// with `H_ii = 0` (an input that is never active) gets `H_ii = 1`;
/// then `H += damp · mean(diag H) · I`. `U = J · inverse(cholesky(J H J)) ·
/// J` (`J` reverses the order): one Cholesky factorization and one
/// triangular inverse, half the work of the reference's
/// `cholesky → cholesky_inverse → cholesky`.
///
/// Float first; if Float cannot factor the matrix (a pivot rounds to ≤ 0 on
/// an ill-conditioned `H`) the same steps run in Double and the result is
/// rounded to Float.
struct InverseHessianFactor {
    /// Row-major `n × n`, upper triangle valid (the strict lower triangle is 0).
    let u: UnsafeMutablePointer<Float>
    let n: Int
    /// Whether Float could not factor `H` and Double was used.
    let usedDouble: Bool

    /// - Throws: ``SwiftPruneError`` `.value` if `H` stays singular after
    ///   damping (even in Double), `.outOfMemory` if scratch cannot be had.
    init(hessian h: UnsafePointer<Double>, n: Int, order: UnsafePointer<Int>?, damp: Double) throws {
        self.n = n
        var diagonalSum = 0.0
        for i in 0 ..< n { let d = h[i * n + i]; diagonalSum += d == 0 ? 1 : d }
        let dampValue = n > 0 ? damp * diagonalSum / Double(n) : 0
        @inline(__always) func entry(_ i: Int, _ j: Int) -> Double {
            // (i, j) of J H J in the processing order, damped, dead diagonals set to 1.
            let pi = order.map { $0[n - 1 - i] } ?? (n - 1 - i)
            let pj = order.map { $0[n - 1 - j] } ?? (n - 1 - j)
            var v = h[pi * n + pj]
            if i == j { v = (v == 0 ? 1 : v) + dampValue }
            return v
        }
        let count = Swift.max(n * n, 1)
        let factor = try FallibleAllocation.allocate(Float.self, count: count, "the inverse Hessian factor")
        var done = false
        defer { if !done { FallibleAllocation.free(factor) } }
        let inverse = try FallibleAllocation.allocate(Float.self, count: count, "the inverse Hessian")
        defer { FallibleAllocation.free(inverse) }
        let workers = Threading.workerCount(for: n * n, minimumPerWorker: 1 << 18)
        parallelFor(workers: workers) { worker in
            for i in partitionRange(n, parts: workers, index: worker) {
                for j in 0 ... i { factor[i * n + j] = Float(entry(i, j)) }
            }
        }
        var useDouble = false
        do {
            try GPTQLinearAlgebra.choleskyLower(factor, n: n)
            try GPTQLinearAlgebra.invertLower(UnsafePointer(factor), n: n, into: inverse)
        } catch let error as SwiftPruneError where error.kind == .invalidValue {
            useDouble = true
        }
        if useDouble {
            let wide = try FallibleAllocation.allocate(Double.self, count: count, "the inverse Hessian (double)")
            defer { FallibleAllocation.free(wide) }
            let wideInverse = try FallibleAllocation.allocate(Double.self, count: count, "the inverse Hessian (double)")
            defer { FallibleAllocation.free(wideInverse) }
            for i in 0 ..< n { for j in 0 ... i { wide[i * n + j] = entry(i, j) } }
            try GPTQLinearAlgebra.choleskyLower(wide, n: n)
            try GPTQLinearAlgebra.invertLower(UnsafePointer(wide), n: n, into: wideInverse)
            for i in 0 ..< n * n { inverse[i] = Float(wideInverse[i]) }
        }
        // U[i][j] = X[n-1-i][n-1-j] for j >= i: X lower ⇒ U upper.
        parallelFor(workers: workers) { worker in
            for i in partitionRange(n, parts: workers, index: worker) {
                let row = factor + i * n, source = inverse + (n - 1 - i) * n + (n - 1)
                for j in 0 ..< i { row[j] = 0 }
                for j in i ..< n { row[j] = source[-j] }
            }
        }
        u = factor
        usedDouble = useDouble
        done = true
    }

    /// Frees `u`.
    func release() { FallibleAllocation.free(u) }
}
