// Small dense Cholesky routines in Double for SparseGPT; see GramMatrix.swift.

/// Dot product of `count` contiguous Doubles with four SIMD accumulators.
@inline(__always)
func calibrationDot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ count: Int) -> Double {
    typealias V = SIMD4<Double>
    var s0 = V(), s1 = V(), s2 = V(), s3 = V()
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 16 <= count {
        let o = i * 8
        s0.addProduct(ra.loadUnaligned(fromByteOffset: o, as: V.self), rb.loadUnaligned(fromByteOffset: o, as: V.self))
        s1.addProduct(ra.loadUnaligned(fromByteOffset: o + 32, as: V.self), rb.loadUnaligned(fromByteOffset: o + 32, as: V.self))
        s2.addProduct(ra.loadUnaligned(fromByteOffset: o + 64, as: V.self), rb.loadUnaligned(fromByteOffset: o + 64, as: V.self))
        s3.addProduct(ra.loadUnaligned(fromByteOffset: o + 96, as: V.self), rb.loadUnaligned(fromByteOffset: o + 96, as: V.self))
        i += 16
    }
    var sum = ((s0 + s1) + (s2 + s3)).sum()
    while i < count { sum += a[i] * b[i]; i += 1 }
    return sum
}

/// Overwrites the lower triangle of the row-major `n × n` symmetric matrix
/// `a` with its Cholesky factor `L` (`a = L Lᵀ`) and zeroes the upper triangle.
/// Left-looking by columns; the rows below each pivot are done in parallel.
/// - Throws: ``SwiftPruneError`` if `a` is not numerically positive definite.
public func calibrationCholesky(_ a: UnsafeMutablePointer<Double>, n: Int) throws {
    for j in 0 ..< n {
        let rowJ = a + j * n
        let pivot = rowJ[j] - calibrationDot(rowJ, rowJ, j)
        guard pivot > 0 && pivot.isFinite else {
            throw SwiftPruneError.value(
                "the Hessian is not positive definite (pivot \(pivot) at column \(j)); increase damp")
        }
        let diagonal = pivot.squareRoot()
        rowJ[j] = diagonal
        for c in (j + 1) ..< max(j + 1, n) { rowJ[c] = 0 }
        let below = n - j - 1
        let workers = Threading.workerCount(for: below * max(j, 1), minimumPerWorker: 1 << 15)
        parallelFor(workers: workers) { worker in
            for i in partitionRange(below, parts: workers, index: worker) {
                let rowI = a + (j + 1 + i) * n
                rowI[j] = (rowI[j] - calibrationDot(rowI, rowJ, j)) / diagonal
            }
        }
    }
}

/// The upper-triangular `U` with `H⁻¹ = Uᵀ U` (torch's
/// `cholesky(cholesky_inverse(cholesky(H)), upper=True)`, SparseGPT's
/// `Hinv`), computed without forming `H⁻¹`: with `J` the reversal
/// permutation and `J H J = L̃ L̃ᵀ`, `U = J L̃⁻¹ J`. One Cholesky and one
/// triangular inverse (columns in parallel).
/// - Parameter h: the row-major `n × n` symmetric positive-definite matrix.
/// - Returns: `U`, row-major, zeros below the diagonal.
/// - Throws: ``SwiftPruneError`` if `h` is not numerically positive definite.
public func calibrationInverseCholeskyUpper(_ h: [Double], n: Int) throws -> [Double] {
    guard h.count == n * n else { throw SwiftPruneError.value("h must be \(n) x \(n)") }
    var reversed = [Double](repeating: 0, count: n * n)
    for i in 0 ..< n { for j in 0 ... i { reversed[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] } }
    try reversed.withUnsafeMutableBufferPointer { try calibrationCholesky($0.baseAddress!, n: n) }
    var upper = [Double](repeating: 0, count: n * n)
    reversed.withUnsafeBufferPointer { lBuffer in
        upper.withUnsafeMutableBufferPointer { uBuffer in
            let l = lBuffer.baseAddress!, u = uBuffer.baseAddress!
            let workers = Threading.workerCount(for: n * n * n / 6, minimumPerWorker: 1 << 18)
            parallelFor(workers: workers) { worker in
                let y = UnsafeMutablePointer<Double>.allocate(capacity: max(n, 1))
                defer { y.deallocate() }
                // Interleaved columns: column k costs ~ (n - k)², so stripes balance.
                var k = worker
                while k < n {
                    // Column k of M = L̃⁻¹: forward substitution of L̃ y = e_k, y[..<k] = 0.
                    y[k] = 1 / l[k * n + k]
                    var i = k + 1
                    while i < n {
                        let row = l + i * n
                        y[i] = -calibrationDot(row + k, y + k, i - k) / row[i]
                        i += 1
                    }
                    // U[n-1-i][n-1-k] = M[i][k].
                    for i in k ..< n { u[(n - 1 - i) * n + (n - 1 - k)] = y[i] }
                    k += workers
                }
            }
        }
    }
    return upper
}
