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

/// The four dot products of `a` with `b0`…`b3` over `count` contiguous Doubles:
/// `a` is loaded once for all four.
@inline(__always)
func calibrationDot4(
    _ a: UnsafePointer<Double>, _ b0: UnsafePointer<Double>, _ b1: UnsafePointer<Double>,
    _ b2: UnsafePointer<Double>, _ b3: UnsafePointer<Double>, _ count: Int
) -> SIMD4<Double> {
    typealias V = SIMD4<Double>
    var s0 = V(), s1 = V(), s2 = V(), s3 = V(), t0 = V(), t1 = V(), t2 = V(), t3 = V()
    let ra = UnsafeRawPointer(a)
    let r0 = UnsafeRawPointer(b0), r1 = UnsafeRawPointer(b1), r2 = UnsafeRawPointer(b2), r3 = UnsafeRawPointer(b3)
    var i = 0
    while i + 8 <= count {
        let o = i * 8
        let x = ra.loadUnaligned(fromByteOffset: o, as: V.self)
        let y = ra.loadUnaligned(fromByteOffset: o + 32, as: V.self)
        s0.addProduct(x, r0.loadUnaligned(fromByteOffset: o, as: V.self))
        s1.addProduct(x, r1.loadUnaligned(fromByteOffset: o, as: V.self))
        s2.addProduct(x, r2.loadUnaligned(fromByteOffset: o, as: V.self))
        s3.addProduct(x, r3.loadUnaligned(fromByteOffset: o, as: V.self))
        t0.addProduct(y, r0.loadUnaligned(fromByteOffset: o + 32, as: V.self))
        t1.addProduct(y, r1.loadUnaligned(fromByteOffset: o + 32, as: V.self))
        t2.addProduct(y, r2.loadUnaligned(fromByteOffset: o + 32, as: V.self))
        t3.addProduct(y, r3.loadUnaligned(fromByteOffset: o + 32, as: V.self))
        i += 8
    }
    var result = V((s0 + t0).sum(), (s1 + t1).sum(), (s2 + t2).sum(), (s3 + t3).sum())
    while i < count {
        let x = a[i]
        result += V(x * b0[i], x * b1[i], x * b2[i], x * b3[i])
        i += 1
    }
    return result
}

/// Overwrites the lower triangle of the row-major `n × n` symmetric matrix
/// `a` with its Cholesky factor `L` (`a = L Lᵀ`) and zeroes the upper triangle.
///
/// Blocked left-looking: for each block of 64 columns, the diagonal block is
/// factored row by row, then every row below computes its 64 entries in
/// parallel (`L_ij = (a_ij - L_i,<j · L_j,<j) / L_jj`) while the row sits in L1
/// and the block's rows in L2, so each row is read once per block rather
/// than once per column.
/// - Throws: ``SwiftPruneError`` if `a` is not numerically positive definite.
public func calibrationCholesky(_ a: UnsafeMutablePointer<Double>, n: Int) throws {
    let block = 64
    var j0 = 0
    while j0 < n {
        let j1 = min(n, j0 + block)
        for j in j0 ..< j1 {
            let rowJ = a + j * n
            for c in j0 ..< j { rowJ[c] = (rowJ[c] - calibrationDot(rowJ, a + c * n, c)) / a[c * n + c] }
            let pivot = rowJ[j] - calibrationDot(rowJ, rowJ, j)
            guard pivot > 0 && pivot.isFinite else {
                throw SwiftPruneError.value(
                    "the Hessian is not positive definite (pivot \(pivot) at column \(j)); increase damp")
            }
            rowJ[j] = pivot.squareRoot()
        }
        let below = n - j1
        let workers = Threading.workerCount(for: below * j1 * (j1 - j0), minimumPerWorker: 1 << 16)
        parallelFor(workers: workers) { worker in
            for i in partitionRange(below, parts: workers, index: worker) {
                let rowI = a + (j1 + i) * n
                // The part over the columns before the block, four rows of the block at a time.
                var j = j0
                while j + 4 <= j1 {
                    let rowJ = a + j * n
                    let d = calibrationDot4(rowI, rowJ, rowJ + n, rowJ + 2 * n, rowJ + 3 * n, j0)
                    rowI[j] -= d[0]; rowI[j + 1] -= d[1]; rowI[j + 2] -= d[2]; rowI[j + 3] -= d[3]
                    j += 4
                }
                while j < j1 { rowI[j] -= calibrationDot(rowI, a + j * n, j0); j += 1 }
                // Then the triangular solve within the block, in order.
                for j in j0 ..< j1 {
                    let rowJ = a + j * n
                    rowI[j] = (rowI[j] - calibrationDot(rowI + j0, rowJ + j0, j - j0)) / rowJ[j]
                }
            }
        }
        j0 = j1
    }
    for i in 0 ..< n { (a + i * n + i + 1).update(repeating: 0, count: n - i - 1) }
}

/// Columns of the triangular inverse computed together (one pass over `L̃` per group).
let columnGroup = 8

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
    var reversed = try [Double](fallibleRepeating: 0, count: n * n)
    for i in 0 ..< n { for j in 0 ... i { reversed[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] } }
    try reversed.withUnsafeMutableBufferPointer { try calibrationCholesky($0.baseAddress!, n: n) }
    var upper = try [Double](fallibleRepeating: 0, count: n * n)
    let workers = Threading.workerCount(for: n * n * n / 6, minimumPerWorker: 1 << 18)
    // Each worker's group of columns, allocated here: one refusal before any work
    // (allocated in parallelForThrowing's workers, the peak would be the same, the failure later).
    let columns = try FallibleAllocation.allocate(Double.self, count: workers * max(n, 1) * columnGroup,
                                                  "the triangular inverse's columns")
    defer { FallibleAllocation.free(columns) }
    reversed.withUnsafeBufferPointer { lBuffer in
        upper.withUnsafeMutableBufferPointer { uBuffer in
            let l = lBuffer.baseAddress!, u = uBuffer.baseAddress!
            let groups = (n + columnGroup - 1) / columnGroup
            parallelFor(workers: workers) { worker in
                // Columns of M = L̃⁻¹ in groups of `columnGroup`: each row of L̃ is read once
                // per group. y[g * n + i] holds M[i][k0 + g].
                let y = columns + worker * max(n, 1) * columnGroup
                // Interleaved groups: group cost falls with k, so stripes balance.
                var group = worker
                while group < groups {
                    let k0 = group * columnGroup, k1 = min(n, k0 + columnGroup)
                    for k in k0 ..< k1 {
                        // Forward substitution of L̃ y = e_k from row k on (y[..<k] = 0).
                        y[(k - k0) * n + k] = 1 / l[k * n + k]
                    }
                    for i in (k0 + 1) ..< max(k0 + 1, n) {
                        let row = l + i * n
                        let diagonal = row[i]
                        if i >= k1 && k1 - k0 == columnGroup {
                            // Full group below it: heads (< 8 terms) plus a shared tail from k1.
                            let tail = i - k1
                            var k = k0
                            while k < k1 {
                                let c0 = y + (k - k0) * n
                                let d = calibrationDot4(row + k1, c0 + k1, c0 + n + k1, c0 + 2 * n + k1,
                                                        c0 + 3 * n + k1, tail)
                                for q in 0 ..< 4 {
                                    let column = c0 + q * n
                                    let head = calibrationDot(row + k + q, column + k + q, k1 - k - q)
                                    column[i] = -(head + d[q]) / diagonal
                                }
                                k += 4
                            }
                        } else {
                            for k in k0 ..< min(k1, i) {
                                let column = y + (k - k0) * n
                                column[i] = -calibrationDot(row + k, column + k, i - k) / diagonal
                            }
                        }
                    }
                    // U[n-1-i][n-1-k] = M[i][k].
                    for k in k0 ..< k1 {
                        let column = y + (k - k0) * n
                        for i in k ..< n { u[(n - 1 - i) * n + (n - 1 - k)] = column[i] }
                    }
                    group += workers
                }
            }
        }
    }
    return upper
}
