import XCTest
@testable import SwiftPrune

/// SVD, randomized SVD, symmetric eigendecomposition and rank selection on
/// closed-form cases and defining identities (u s vt = w, orthonormality).
final class SingularValueDecompositionTests: XCTestCase {
    func randomMatrix(_ m: Int, _ n: Int, seed: UInt64) throws -> Tensor<Float> {
        var random = TestRandom(seed: seed)
        return try Tensor(shape: [m, n], scalars: (0 ..< m * n).map { _ in random.float(in: -1 ... 1) })
    }

    func assertDecomposes(_ w: Tensor<Float>, _ r: SVDResult, tolerance: Float = 1e-5,
                          file: StaticString = #filePath, line: UInt = #line) {
        let m = w.shape[0], n = w.shape[1], k = r.s.count
        let scale = max(r.s.scalars.first ?? 0, 1e-30)
        for j in 1 ..< max(1, k) { XCTAssertLessThanOrEqual(r.s.scalars[j], r.s.scalars[j - 1], file: file, line: line) }
        for i in 0 ..< m {
            for j in 0 ..< n {
                var sum: Float = 0
                for p in 0 ..< k { sum += r.u.scalars[i * k + p] * r.s.scalars[p] * r.vt.scalars[p * n + j] }
                XCTAssertEqual(sum, w.scalars[i * n + j], accuracy: tolerance * scale, file: file, line: line)
            }
        }
        for p in 0 ..< k {
            for q in 0 ..< k {
                var uu: Float = 0, vv: Float = 0
                for i in 0 ..< m { uu += r.u.scalars[i * k + p] * r.u.scalars[i * k + q] }
                for j in 0 ..< n { vv += r.vt.scalars[p * n + j] * r.vt.scalars[q * n + j] }
                XCTAssertEqual(uu, p == q ? 1 : 0, accuracy: 1e-5, file: file, line: line)
                XCTAssertEqual(vv, p == q ? 1 : 0, accuracy: 1e-5, file: file, line: line)
            }
        }
    }

    func testRandomTallWideSquareAndVectors() throws {
        for (m, n) in [(1, 1), (1, 7), (7, 1), (9, 4), (4, 9), (30, 30), (70, 20)] {
            let w = try randomMatrix(m, n, seed: UInt64(m * 100 + n))
            assertDecomposes(w, try SingularValueDecomposition.decompose(w))
        }
    }

    func testClosedFormDiagonalAndRankOne() throws {
        let w = try Tensor<Float>(shape: [3, 3], scalars: [0, 0, -2, 5, 0, 0, 0, 1, 0])
        let r = try SingularValueDecomposition.decompose(w)
        XCTAssertEqual(r.s.scalars, [5, 2, 1])
        assertDecomposes(w, r)
        // x yᵀ with |x| = 3, |y| = 5.
        let x: [Float] = [1, 2, 2], y: [Float] = [3, 4]
        let outer = try Tensor(shape: [3, 2], scalars: x.flatMap { a in y.map { a * $0 } })
        let s = try SingularValueDecomposition.decompose(outer).s.scalars
        XCTAssertEqual(s[0], 15, accuracy: 1e-5)
        XCTAssertEqual(s[1], 0, accuracy: 1e-5)
    }

    func testZeroAndEmptyMatrices() throws {
        let zero = try Tensor<Float>(shape: [5, 3], repeating: 0)
        let r = try SingularValueDecomposition.decompose(zero)
        XCTAssertEqual(r.s.scalars, [0, 0, 0])
        assertDecomposes(zero, r)
        let empty = try SingularValueDecomposition.decompose(try Tensor<Double>(shape: [0, 4], repeating: 0))
        XCTAssertEqual(empty.u.shape, [0, 0])
        XCTAssertEqual(empty.vt.shape, [0, 4])
    }

    func testNonFiniteAndBadShapesThrow() throws {
        let w = try Tensor<Float>(shape: [2, 2], scalars: [1, .nan, 0, 1])
        XCTAssertThrowsError(try SingularValueDecomposition.decompose(w)) { error in
            XCTAssertEqual((error as? SwiftPruneError)?.kind, .invalidValue)
        }
        XCTAssertThrowsError(try SingularValueDecomposition.decompose(try Tensor<Float>(shape: [4], repeating: 1)))
    }

    func testSymmetricEigenOfKnownMatrix() throws {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        var a: [Double] = [2, 1, 1, 2]
        let values = try a.withUnsafeMutableBufferPointer { try SymmetricEigen.decompose($0.baseAddress!, n: 2) }
        XCTAssertEqual(values[0], 1, accuracy: 1e-14)
        XCTAssertEqual(values[1], 3, accuracy: 1e-14)
        XCTAssertEqual(abs(a[2]), 0.5.squareRoot(), accuracy: 1e-14)
        // The 1-2-1 tridiagonal Toeplitz matrix: λ_j = 2 - 2 cos(jπ/(n+1)).
        let n = 12
        var t = [Double](repeating: 0, count: n * n)
        for i in 0 ..< n { t[i * n + i] = 2; if i + 1 < n { t[i * n + i + 1] = -1; t[(i + 1) * n + i] = -1 } }
        for method in [SymmetricEigen.VectorMethod.inverseIteration, .rotations] {
            var copy = t
            let eigen = try copy.withUnsafeMutableBufferPointer {
                try SymmetricEigen.decompose($0.baseAddress!, n: n, method: method)
            }
            for j in 1 ... n {
                XCTAssertEqual(eigen[j - 1], 2 - 2 * cos(Double(j) * .pi / Double(n + 1)), accuracy: 1e-13)
            }
            try checkEigenpairs(t, copy, eigen, n: n)
        }
    }

    func testSymmetricEigenOfWilkinsonMatrixWithNearlyEqualPairs() throws {
        // W21+: diagonal |10 - i|, off-diagonal 1; its largest eigenvalues come in
        // pairs equal to ~1e-14, the hard case for inverse iteration.
        let n = 21
        var w = [Double](repeating: 0, count: n * n)
        for i in 0 ..< n {
            w[i * n + i] = Double(abs(10 - i))
            if i + 1 < n { w[i * n + i + 1] = 1; w[(i + 1) * n + i] = 1 }
        }
        let original = w
        for method in [SymmetricEigen.VectorMethod.inverseIteration, .rotations] {
            w = original
            let values = try w.withUnsafeMutableBufferPointer {
                try SymmetricEigen.decompose($0.baseAddress!, n: n, method: method)
            }
            XCTAssertEqual(values[n - 1], 10.746194182903393, accuracy: 1e-12)
            XCTAssertEqual(values[n - 2], 10.746194182903322, accuracy: 1e-12)
            try checkEigenpairs(original, w, values, n: n)
        }
    }

    func testSymmetricEigenTopVectorsOnClusteredAndDegenerateSpectra() throws {
        // A = Q Λ Qᵀ with Q a product of three Householder reflections (orthogonal to rounding) and a
        // spectrum with an 8-fold eigenvalue the `top` boundary cuts through, a pair 1e-9 apart and a
        // 5-fold cluster 1e-7 wide among the kept ones: the top-k rows must be orthonormal eigenvectors
        // (A v = λ v) of the known eigenvalues, as in the full decomposition. n = 160 goes through the
        // blocked tridiagonalization.
        let n = 160
        var spectrum = (0 ..< n).map { 1 + Double($0) / 16 }
        for i in 110 ..< 118 { spectrum[i] = spectrum[110] }          // degenerate, cut at 114
        spectrum[130] = spectrum[129] + 1e-9                          // nearly equal pair
        for i in 140 ..< 145 { spectrum[i] = spectrum[140] + 2e-8 * Double(i - 140) }
        spectrum.sort()
        var random = TestRandom(seed: 7)
        var q = [Double](repeating: 0, count: n * n)
        for i in 0 ..< n { q[i * n + i] = 1 }
        for _ in 0 ..< 3 {   // q ← q (I − 2 v vᵀ)
            let v = (0 ..< n).map { _ in Double(random.float(in: -1 ... 1)) }
            let norm = v.reduce(0) { $0 + $1 * $1 }
            for r in 0 ..< n {
                let projection = (0 ..< n).reduce(0.0) { $0 + q[r * n + $1] * v[$1] } * 2 / norm
                for c in 0 ..< n { q[r * n + c] -= projection * v[c] }
            }
        }
        // Plain loops over unsafe buffers: this test runs unoptimized (debug) too.
        var a = [Double](repeating: 0, count: n * n)
        q.withUnsafeBufferPointer { q in
            a.withUnsafeMutableBufferPointer { a in
                for i in 0 ..< n {
                    for j in i ..< n {
                        var sum = 0.0
                        for l in 0 ..< n { sum += q[i * n + l] * spectrum[l] * q[j * n + l] }
                        a[i * n + j] = sum
                        a[j * n + i] = sum
                    }
                }
            }
        }
        for k in [46, 1] {
            var w = a
            let values = try w.withUnsafeMutableBufferPointer {
                try SymmetricEigen.decompose($0.baseAddress!, n: n, top: k)
            }
            for j in 0 ..< n { XCTAssertEqual(values[j], spectrum[j], accuracy: 1e-12 * spectrum[n - 1]) }
            var worstProduct = 0.0, worstResidual = 0.0
            w.withUnsafeBufferPointer { w in
                a.withUnsafeBufferPointer { a in
                    for p in n - k ..< n {
                        for r in p ..< n {
                            var product = 0.0
                            for i in 0 ..< n { product += w[p * n + i] * w[r * n + i] }
                            worstProduct = max(worstProduct, abs(product - (p == r ? 1 : 0)))
                        }
                        for i in 0 ..< n {
                            var av = 0.0
                            for j in 0 ..< n { av += a[i * n + j] * w[p * n + j] }
                            worstResidual = max(worstResidual, abs(av - values[p] * w[p * n + i]))
                        }
                    }
                }
            }
            XCTAssertLessThan(worstProduct, 1e-12, "orthonormality of the top \(k)")
            XCTAssertLessThan(worstResidual, 1e-12 * spectrum[n - 1], "A v = λ v for the top \(k)")
        }
    }

    func testSymmetricEigenNegligibleClusterOfAnExactlyRankThreeMatrix() throws {
        // A = B Bᵀ with B n × 3: three positive eigenvalues and n − 3 zeros. With `negligible` (as the SVD
        // calls it on Gram matrices) the zero cluster gets *some* orthonormal basis of the complement, not
        // inverse iteration's vectors: V must still be orthonormal and A V = V Λ. The reference spectrum
        // is that of the 3 × 3 Gram matrix BᵀB (the same nonzero eigenvalues), by the closed form for
        // symmetric 3 × 3 matrices. n = 160 goes through the blocked tridiagonalization first.
        for n in [64, 160] {
            var random = TestRandom(seed: UInt64(n))
            let b = (0 ..< n * 3).map { _ in Double(random.float(in: -1 ... 1)) }
            var a = [Double](repeating: 0, count: n * n)
            for i in 0 ..< n {
                for j in 0 ..< n { a[i * n + j] = (0 ..< 3).reduce(0.0) { $0 + b[i * 3 + $1] * b[j * 3 + $1] } }
            }
            var gram = [Double](repeating: 0, count: 9)
            for p in 0 ..< 3 {
                for q in 0 ..< 3 { gram[p * 3 + q] = (0 ..< n).reduce(0.0) { $0 + b[$1 * 3 + p] * b[$1 * 3 + q] } }
            }
            let expected = symmetricThreeByThreeEigenvalues(gram)
            var w = a
            let values = try w.withUnsafeMutableBufferPointer {
                try SymmetricEigen.decompose($0.baseAddress!, n: n, negligible: 1e-12)
            }
            let scale = expected[2]
            for i in 0 ..< n - 3 { XCTAssertEqual(values[i], 0, accuracy: 1e-12 * scale) }
            for i in 0 ..< 3 { XCTAssertEqual(values[n - 3 + i], expected[i], accuracy: 1e-12 * scale) }
            var worstOrthogonality = 0.0, worstResidual = 0.0
            for p in 0 ..< n {
                for q in 0 ..< n {
                    let product = (0 ..< n).reduce(0.0) { $0 + w[p * n + $1] * w[q * n + $1] }
                    worstOrthogonality = max(worstOrthogonality, abs(product - (p == q ? 1 : 0)))
                }
                for i in 0 ..< n {
                    let av = (0 ..< n).reduce(0.0) { $0 + a[i * n + $1] * w[p * n + $1] }
                    worstResidual = max(worstResidual, abs(av - values[p] * w[p * n + i]))
                }
            }
            XCTAssertLessThan(worstOrthogonality, 1e-12, "‖VᵀV − I‖ for n = \(n)")
            XCTAssertLessThan(worstResidual, 1e-12 * scale, "‖AV − VΛ‖ for n = \(n)")
        }
    }

    /// The eigenvalues, ascending, of a symmetric 3 × 3 matrix (row-major), by the trigonometric closed form
    /// (Smith, 1961): an oracle independent of the tridiagonal QL / inverse iteration under test.
    func symmetricThreeByThreeEigenvalues(_ m: [Double]) -> [Double] {
        let q = (m[0] + m[4] + m[8]) / 3
        let off = m[1] * m[1] + m[2] * m[2] + m[5] * m[5]
        let p = (((m[0] - q) * (m[0] - q) + (m[4] - q) * (m[4] - q) + (m[8] - q) * (m[8] - q) + 2 * off) / 6)
            .squareRoot()
        let c = (0 ..< 9).map { (m[$0] - ($0 % 4 == 0 ? q : 0)) / p }   // (M − qI) / p
        let det = c[0] * (c[4] * c[8] - c[5] * c[7]) - c[1] * (c[3] * c[8] - c[5] * c[6])
            + c[2] * (c[3] * c[7] - c[4] * c[6])
        let phi = acos(min(1, max(-1, det / 2))) / 3
        let largest = q + 2 * p * cos(phi), smallest = q + 2 * p * cos(phi + 2 * Double.pi / 3)
        return [smallest, 3 * q - largest - smallest, largest]
    }

    func testBlockedTridiagonalizationMatchesUnblocked() throws {
        // 200 > unblockedSize: three 32-reflector panels, then the unblocked tail.
        // Both reductions generate the same reflectors; only the order of the
        // floating-point sums differs.
        let n = 200
        var random = TestRandom(seed: 41)
        var a = [Double](repeating: 0, count: n * n)
        for i in 0 ..< n {
            for j in i ..< n {
                let x = Double(random.float(in: -1 ... 1))
                a[i * n + j] = x; a[j * n + i] = x
            }
        }
        var blocked = a, plain = a
        var d1 = [Double](repeating: 0, count: n), e1 = d1, t1 = d1
        var d2 = d1, e2 = d1, t2 = d1
        try blocked.withUnsafeMutableBufferPointer {
            try SymmetricEigen.tridiagonalizeBlocked($0.baseAddress!, n: n, d: &d1, e: &e1, tau: &t1)
        }
        try plain.withUnsafeMutableBufferPointer {
            try SymmetricEigen.tridiagonalize($0.baseAddress!, n: n, d: &d2, e: &e2, tau: &t2)
        }
        for k in 0 ..< n {
            XCTAssertEqual(d1[k], d2[k], accuracy: 1e-11)
            XCTAssertEqual(e1[k], e2[k], accuracy: 1e-11)
            XCTAssertEqual(t1[k], t2[k], accuracy: 1e-11)
            for j in k + 1 ..< n { XCTAssertEqual(blocked[k * n + j], plain[k * n + j], accuracy: 1e-9) }
        }
        // And the whole eigendecomposition through the blocked path: A v = λ v, orthonormal.
        var w = a
        let values = try w.withUnsafeMutableBufferPointer { try SymmetricEigen.decompose($0.baseAddress!, n: n) }
        for p in stride(from: 0, to: n, by: 13) {
            for i in 0 ..< n {
                var av = 0.0
                for j in 0 ..< n { av += a[i * n + j] * w[p * n + j] }
                XCTAssertEqual(av, values[p] * w[p * n + i], accuracy: 1e-11)
            }
            for q in 0 ..< n {
                var product = 0.0
                for i in 0 ..< n { product += w[p * n + i] * w[q * n + i] }
                XCTAssertEqual(product, p == q ? 1 : 0, accuracy: 1e-10)
            }
        }
    }

    /// Rows of `w` are orthonormal eigenvectors of `original` for `values`.
    func checkEigenpairs(_ original: [Double], _ w: [Double], _ values: [Double], n: Int) throws {
        for p in 0 ..< n {
            for q in 0 ..< n {
                var product = 0.0
                for i in 0 ..< n { product += w[p * n + i] * w[q * n + i] }
                XCTAssertEqual(product, p == q ? 1 : 0, accuracy: 1e-12)
            }
            for i in 0 ..< n {   // A v = λ v
                var av = 0.0
                for j in 0 ..< n { av += original[i * n + j] * w[p * n + j] }
                XCTAssertEqual(av, values[p] * w[p * n + i], accuracy: 1e-12)
            }
        }
    }

    func testRandomizedMatchesExactOnLowRank() throws {
        let a = try randomMatrix(40, 3, seed: 1), b = try randomMatrix(3, 25, seed: 2)
        let w = try matmul(a, b)
        let exact = try SingularValueDecomposition.decompose(w).s.scalars
        let s = try RandomizedSVD.decompose(w, rank: 3).s.scalars
        for j in 0 ..< 3 { XCTAssertEqual(s[j], exact[j], accuracy: 1e-5 * exact[0]) }
        XCTAssertEqual(RandomizedSVD.defaultPowerIterations(rank: 9, m: 100, n: 200), 7)
        XCTAssertEqual(RandomizedSVD.defaultPowerIterations(rank: 10, m: 100, n: 200), 4)
        XCTAssertThrowsError(try RandomizedSVD.decompose(w, rank: 26))
        XCTAssertThrowsError(try RandomizedSVD.decompose(w, rank: 2, oversample: -1))
    }

    func testRankSelectors() throws {
        let s: [Float] = [3, 2, 1, 0]   // energies 9, 4, 1 of 14
        try s.withUnsafeBufferPointer { s in
            XCTAssertEqual(try RankSelector.energy(0).rank(m: 4, n: 5, singularValues: s), 0)
            XCTAssertEqual(try RankSelector.energy(9.0 / 14).rank(m: 4, n: 5, singularValues: s), 1)
            XCTAssertEqual(try RankSelector.energy(0.65).rank(m: 4, n: 5, singularValues: s), 2)
            XCTAssertEqual(try RankSelector.energy(1).rank(m: 4, n: 5, singularValues: s), 3)
        }
        XCTAssertEqual(try RankSelector.ratio(0.5).rank(m: 10, n: 10), 2)     // 2 * 20 <= 50 < 3 * 20
        XCTAssertEqual(try RankSelector.ratio(100).rank(m: 10, n: 4), 4)
        XCTAssertEqual(try RankSelector.rank(3).rank(m: 10, n: 4), 3)
        XCTAssertThrowsError(try RankSelector.rank(5).rank(m: 10, n: 4))
        XCTAssertThrowsError(try RankSelector.ratio(0).rank(m: 10, n: 4))
        XCTAssertThrowsError(try RankSelector.energy(1.5).maximumRank(m: 10, n: 4))
    }

    func testLowRankFactorsReproduceTruncation() throws {
        let w = try randomMatrix(12, 8, seed: 5)
        let full = try lowRank(w, selector: .rank(8), method: .svd)
        let product = try matmul(full.a, full.b)
        for (x, y) in zip(product.scalars, w.scalars) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        let two = try lowRank(w, selector: .rank(2), method: .randomized)
        XCTAssertEqual(two.a.shape, [12, 2])
        XCTAssertEqual(two.b.shape, [2, 8])
        XCTAssertEqual(two.rank, 2)
    }

    /// The randomized SVD's transpose (8 × 8 register blocks inside 32 × 32 tiles, element by
    /// element at the ragged edges) is an exact copy, on shapes with every kind of edge.
    func testTransposeBlockedIsExact() throws {
        for (rows, cols) in [(1, 1), (1, 9), (9, 1), (8, 8), (7, 9), (33, 65), (64, 128), (129, 40), (300, 37)] {
            var random = TestRandom(seed: UInt64(rows * 1000 + cols))
            let src = (0 ..< rows * cols).map { _ in random.float(in: -1 ... 1) }
            var dst = [Float](repeating: .nan, count: rows * cols)
            src.withUnsafeBufferPointer { src in
                dst.withUnsafeMutableBufferPointer { dst in
                    RandomizedSVD.transposeBlocked(src.baseAddress!, rows: rows, cols: cols, into: dst.baseAddress!)
                }
            }
            for i in 0 ..< rows {
                for j in 0 ..< cols where dst[j * rows + i] != src[i * cols + j] {
                    XCTFail("(\(rows), \(cols)): dst[\(j), \(i)] = \(dst[j * rows + i]), expected \(src[i * cols + j])")
                    return
                }
            }
        }
    }
}
