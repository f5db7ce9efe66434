import XCTest
@testable import SwiftPrune

/// The blocked GEMM against a naive triple loop in Double, over every
/// transposition, edge tiles, alpha/beta and thread counts.
final class GEMMTests: XCTestCase {
    func naive(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Double,
               _ a: [Double], _ lda: Int, _ b: [Double], _ ldb: Int, _ beta: Double, _ c: [Double], _ ldc: Int) -> [Double] {
        var out = c
        for i in 0 ..< m {
            for j in 0 ..< n {
                var sum = 0.0
                for p in 0 ..< k {
                    let x = transA ? a[p * lda + i] : a[i * lda + p]
                    let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += x * y
                }
                out[i * ldc + j] = alpha * sum + (beta == 0 ? 0 : beta * c[i * ldc + j])
            }
        }
        return out
    }

    func check<T: GEMMScalar>(_: T.Type, m: Int, n: Int, k: Int, transA: Bool, transB: Bool,
                              alpha: T, beta: T, pad: Int, tolerance: Double) throws {
        var random = TestRandom(seed: UInt64(m * 7919 + n * 31 + k))
        let lda = max(1, transA ? m : k) + pad, ldb = max(1, transB ? k : n) + pad, ldc = max(1, n) + pad
        let a = (0 ..< max(1, (transA ? k : m) * lda)).map { _ in T(random.float(in: -1 ... 1)) }
        let b = (0 ..< max(1, (transB ? n : k) * ldb)).map { _ in T(random.float(in: -1 ... 1)) }
        var c = (0 ..< max(1, m * ldc)).map { _ in T(random.float(in: -1 ... 1)) }
        let expected = naive(transA, transB, m, n, k, Double(alpha), a.map(Double.init), lda, b.map(Double.init), ldb,
                             Double(beta), c.map(Double.init), ldc)
        try a.withUnsafeBufferPointer { a in
            try b.withUnsafeBufferPointer { b in
                try c.withUnsafeMutableBufferPointer { c in
                    try gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a.baseAddress, lda: lda,
                             b: b.baseAddress, ldb: ldb, beta: beta, c: c.baseAddress, ldc: ldc)
                }
            }
        }
        for i in 0 ..< m {
            for j in 0 ..< n {
                XCTAssertEqual(Double(c[i * ldc + j]), expected[i * ldc + j], accuracy: tolerance * Double(max(k, 1)),
                               "\(T.self) m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) at (\(i), \(j))")
            }
        }
    }

    func testAllTranspositionsAndEdgeTiles() throws {
        // More than 128 columns (A packed, not read in place): six-row panels packed eight depth steps
        // at a time with a ragged remainder (k = 9, 300 = 256 + 44), partial panels (m = 7, 50).
        for (m, n, k) in [(1, 1, 1), (6, 16, 5), (7, 17, 3), (13, 33, 300), (150, 40, 260), (5, 3, 0),
                          (50, 150, 300), (7, 140, 9), (12, 129, 16)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    try check(Float.self, m: m, n: n, k: k, transA: transA, transB: transB,
                              alpha: 1, beta: 0, pad: 0, tolerance: 1e-6)
                    try check(Double.self, m: m, n: n, k: k, transA: transA, transB: transB,
                              alpha: 1, beta: 0, pad: 0, tolerance: 1e-14)
                }
            }
        }
    }

    func testAlphaBetaAndLeadingDimensions() throws {
        try check(Float.self, m: 20, n: 30, k: 40, transA: false, transB: true, alpha: -0.5, beta: 2, pad: 3, tolerance: 1e-6)
        try check(Double.self, m: 20, n: 30, k: 40, transA: true, transB: false, alpha: 3, beta: 0.25, pad: 5, tolerance: 1e-14)
        try check(Float.self, m: 9, n: 9, k: 9, transA: false, transB: false, alpha: 0, beta: 0.5, pad: 1, tolerance: 1e-6)
    }

    func testSymmetricProductMatchesGEMM() throws {
        var random = TestRandom(seed: 11)
        for (n, k) in [(1, 1), (7, 3), (40, 300), (150, 37)] {
            for transA in [false, true] {
                let a = (0 ..< n * k).map { _ in Double(random.float(in: -1 ... 1)) }
                let lda = transA ? n : k
                var full = [Double](repeating: 0, count: n * n), sym = [Double](repeating: .nan, count: n * n)
                try gemm(transA: transA, transB: !transA, m: n, n: n, k: k, alpha: 2, a: a, lda: lda,
                         b: a, ldb: lda, beta: 0, c: &full, ldc: n)
                try syrk(transA: transA, n: n, k: k, alpha: 2, a: a, lda: lda, c: &sym, ldc: n)
                for i in 0 ..< n * n { XCTAssertEqual(sym[i], full[i], accuracy: 1e-12, "n=\(n) k=\(k) tA=\(transA)") }
            }
        }
    }

    func testBetaZeroIgnoresNaNInC() throws {
        let a: [Float] = [1, 2], b: [Float] = [3, 4]
        var c: [Float] = [.nan]
        try gemm(transA: false, transB: false, m: 1, n: 1, k: 2, alpha: 1, a: a, lda: 2, b: b, ldb: 1,
                 beta: 0, c: &c, ldc: 1)
        XCTAssertEqual(c, [11])
    }

    /// With `beta == 0` each tile of C is zeroed by the pass that first writes it: every tile
    /// kind (full and edge tiles, A packed or read in place, one worker or row slices) must
    /// overwrite NaN in C, and give the same values as a C of zeros.
    func testBetaZeroOverwritesEveryTile() throws {
        defer { try? Threading.setThreadCount(0) }
        var random = TestRandom(seed: 17)
        for (m, n, k) in [(13, 150, 20), (300, 64, 300), (130, 200, 263)] {  // the last two split at 2 threads
            let a = (0 ..< m * k).map { _ in random.float(in: -1 ... 1) }
            let b = (0 ..< k * n).map { _ in random.float(in: -1 ... 1) }
            for threads in [1, 2] {
                try Threading.setThreadCount(threads)
                var zeros = [Float](repeating: 0, count: m * n), nans = [Float](repeating: .nan, count: m * n)
                try gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n,
                         beta: 1, c: &zeros, ldc: n)
                try gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n,
                         beta: 0, c: &nans, ldc: n)
                XCTAssertEqual(nans, zeros, "m=\(m) n=\(n) k=\(k) threads=\(threads)")
            }
        }
    }

    func testThreadsAgree() throws {
        defer { try? Threading.setThreadCount(0) }
        let m = 200, n = 300, k = 150
        var random = TestRandom(seed: 3)
        let a = try Tensor(shape: [m, k], scalars: (0 ..< m * k).map { _ in random.float(in: -1 ... 1) })
        let b = try Tensor(shape: [k, n], scalars: (0 ..< k * n).map { _ in random.float(in: -1 ... 1) })
        try Threading.setThreadCount(1)
        let one = try matmul(a, b)
        try Threading.setThreadCount(3)
        let three = try matmul(a, b)
        XCTAssertEqual(one, three)
    }

    /// The float32 sliver order (one worker, packed A: `GEMMSliverOrder.swift`) against the
    /// float64 loop, and bit for bit against the general order (two workers on fewer than
    /// 2048 rows share each packed block instead): blocks of B past the first (n = 400:
    /// 384 + 16 columns), ragged depth (300 = 256 + 44), partial slivers and panels, alpha,
    /// beta and padded leading dimensions, both layouts of A (packed per sliver or per block).
    func testSliverOrderMatchesReferenceAndGeneralOrder() throws {
        defer { try? Threading.setThreadCount(0) }
        try Threading.setThreadCount(1)
        for transA in [false, true] {
            for transB in [false, true] {
                try check(Float.self, m: 50, n: 400, k: 300, transA: transA, transB: transB,
                          alpha: 1, beta: 0, pad: 0, tolerance: 1e-6)
            }
            try check(Float.self, m: 31, n: 785, k: 9, transA: transA, transB: false,
                      alpha: -0.5, beta: 2, pad: 3, tolerance: 1e-6)
        }
        var random = TestRandom(seed: 23)
        for (m, n, k) in [(50, 400, 300), (1000, 785, 520), (13, 129, 1)] {
            for transA in [false, true] {
                let a = (0 ..< m * k).map { _ in random.float(in: -1 ... 1) }
                let b = (0 ..< k * n).map { _ in random.float(in: -1 ... 1) }
                var results: [[Float]] = []
                for threads in [1, 2] {
                    try Threading.setThreadCount(threads)
                    var c = [Float](repeating: .nan, count: m * n)
                    try gemm(transA: transA, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: transA ? m : k,
                             b: b, ldb: n, beta: 0, c: &c, ldc: n)
                    results.append(c)
                }
                XCTAssertEqual(results[0].map(\.bitPattern), results[1].map(\.bitPattern),
                               "m=\(m) n=\(n) k=\(k) tA=\(transA)")
            }
        }
    }

    /// More rows than one sliver-order block of A (4092): the second block packs its own
    /// A and repacks B; against the float64 loop on rows of both blocks and both edges.
    /// (A block of 4096 rows, not a multiple of the 6-row sliver, overran the packed A
    /// into the edge tiles' scratch: wrong last rows at m = 4096.)
    func testSliverOrderAcrossRowBlocks() throws {
        defer { try? Threading.setThreadCount(0) }
        try Threading.setThreadCount(1)
        let n = 140, k = 270
        for m in [4096, 4103] {
            var random = TestRandom(seed: UInt64(m))
            let a = (0 ..< m * k).map { _ in random.float(in: -1 ... 1) }
            let b = (0 ..< k * n).map { _ in random.float(in: -1 ... 1) }
            var c = [Float](repeating: .nan, count: m * n)
            try gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n,
                     beta: 0, c: &c, ldc: n)
            for i in [0, 5, 4091, 4092, 4093, 4095, 4096, m - 1] where i < m {
                for j in [0, 15, 16, n - 1] {
                    var sum = 0.0
                    for p in 0 ..< k { sum += Double(a[i * k + p]) * Double(b[p * n + j]) }
                    XCTAssertEqual(Double(c[i * n + j]), sum, accuracy: 1e-6 * Double(k), "m=\(m) (\(i), \(j))")
                }
            }
        }
    }

    func testBadArgumentsThrow() throws {
        var c: [Float] = [0]
        XCTAssertThrowsError(try gemm(transA: false, transB: false, m: -1, n: 1, k: 1, alpha: Float(1), a: nil, lda: 1,
                                      b: nil, ldb: 1, beta: 0, c: &c, ldc: 1))
        XCTAssertThrowsError(try gemm(transA: false, transB: false, m: 1, n: 1, k: 4, alpha: Float(1), a: nil, lda: 2,
                                      b: nil, ldb: 1, beta: 0, c: &c, ldc: 1))
        XCTAssertThrowsError(try gemm(transA: false, transB: false, m: 1, n: 1, k: 1, alpha: Float(1), a: nil, lda: 1,
                                      b: nil, ldb: 1, beta: 0, c: &c, ldc: 1))
        let a = try Tensor<Float>(shape: [2, 3], repeating: 1), b = try Tensor<Float>(shape: [2, 3], repeating: 1)
        XCTAssertThrowsError(try matmul(a, b))
        XCTAssertEqual(try matmul(a, Tensor<Float>(shape: [3, 0], repeating: 0)).shape, [2, 0])
    }
}
