import Synchronization
import XCTest
@testable import SwiftPrune
import SwiftPruneAVX512

/// The AVX-512 SGEMM path (6 × 32 micro-tiles, chosen when
/// `CPUFeatures.hasAVX512`) against a naive loop in Double and against the
/// portable AVX2 path, which performs the same operations in the same order
/// within a depth block (the two must agree bit for bit for k ≤ 256). On a CPU without AVX-512 both runs take
/// the portable path and the tests still check it.
final class GEMMAVX512Tests: XCTestCase {
    /// `gemm` on Float data with the portable path forced or not.
    func product(portable: Bool, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float,
                 a: [Float], lda: Int, b: [Float], ldb: Int, c: [Float], ldc: Int) throws -> [Float] {
        let saved = CPUFeatures.portableOnly.load(ordering: .relaxed)
        CPUFeatures.portableOnly.store(portable, ordering: .relaxed)
        defer { CPUFeatures.portableOnly.store(saved, ordering: .relaxed) }
        var out = c
        try gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                 b: b, ldb: ldb, beta: beta, c: &out, ldc: ldc)
        return out
    }

    func check(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, alpha: Float, beta: Float, pad: Int) throws {
        var random = TestRandom(seed: UInt64(m * 7919 + n * 31 + k * 3 + pad))
        let lda = max(1, transA ? m : k) + pad, ldb = max(1, transB ? k : n) + pad, ldc = max(1, n) + pad
        let a = (0 ..< max(1, (transA ? k : m) * lda)).map { _ in random.float(in: -1 ... 1) }
        let b = (0 ..< max(1, (transB ? n : k) * ldb)).map { _ in random.float(in: -1 ... 1) }
        let c = (0 ..< max(1, m * ldc)).map { _ in random.float(in: -1 ... 1) }
        let fast = try product(portable: false, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                               beta: beta, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        let portable = try product(portable: true, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                   beta: beta, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        let label = "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB)"
        if k <= 256 {
            // One depth block on both paths: the same operations in the same order.
            XCTAssertEqual(fast, portable, "AVX-512 and portable paths differ, \(label)")
        } else {
            // The AVX-512 path splits the depth in blocks of 512, the portable one in 256.
            for i in 0 ..< fast.count {
                XCTAssertEqual(fast[i], portable[i], accuracy: 1e-6 * Float(k), "\(label) at \(i)")
            }
        }
        // Independent reference: the naive sum in Double.
        var worst = 0.0
        for i in 0 ..< m {
            for j in 0 ..< n {
                var sum = 0.0
                for p in 0 ..< k {
                    let x = Double(transA ? a[p * lda + i] : a[i * lda + p])
                    let y = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
                    sum += x * y
                }
                let expected = Double(alpha) * sum + (beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j]))
                worst = max(worst, abs(Double(fast[i * ldc + j]) - expected))
            }
            // Padding columns of C are never written.
            for j in n ..< ldc where i * ldc + j < c.count { XCTAssertEqual(fast[i * ldc + j], c[i * ldc + j], label) }
        }
        XCTAssertLessThanOrEqual(worst, 1e-6 * Double(max(k, 1)) * 4, label)
    }

    func testWideTilesEveryTranspositionAndEdge() throws {
        // n around multiples of 32 (full, partial and single-column panels),
        // m around multiples of 6, k across the 256-deep blocks.
        for (m, n, k) in [(1, 1, 1), (6, 32, 7), (7, 33, 5), (5, 31, 300), (12, 64, 257), (13, 95, 40),
                          (150, 97, 260), (101, 70, 30), (96, 33, 517), (2, 1100, 3), (31, 2, 513), (7, 40, 1030)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    try check(m: m, n: n, k: k, transA: transA, transB: transB, alpha: 1, beta: 0, pad: 0)
                }
            }
        }
    }

    func testAlphaBetaAndPaddedLeadingDimensions() throws {
        try check(m: 20, n: 70, k: 40, transA: false, transB: true, alpha: -0.5, beta: 2, pad: 3)
        try check(m: 37, n: 45, k: 19, transA: true, transB: false, alpha: 3, beta: 0.25, pad: 5)
        try check(m: 9, n: 40, k: 9, transA: false, transB: false, alpha: 0, beta: 0.5, pad: 1)
    }

    func testThreadCountsAgreeOnWidePath() throws {
        defer { try? Threading.setThreadCount(0) }
        // Large enough to split by row blocks (m) and by column panels (small m).
        for (m, n, k) in [(400, 300, 200), (20, 1500, 300)] {
            var random = TestRandom(seed: UInt64(m + n))
            let a = try Tensor(shape: [m, k], scalars: (0 ..< m * k).map { _ in random.float(in: -1 ... 1) })
            let b = try Tensor(shape: [k, n], scalars: (0 ..< k * n).map { _ in random.float(in: -1 ... 1) })
            try Threading.setThreadCount(1)
            let one = try matmul(a, b)
            try Threading.setThreadCount(2)
            let two = try matmul(a, b)
            try Threading.setThreadCount(5)
            let five = try matmul(a, b)
            XCTAssertEqual(one, two)
            XCTAssertEqual(one, five)
        }
    }

    func testSymmetricProductOnBothPaths() throws {
        // syrk computes only the tiles touching the upper triangle (6- and
        // 12-row tiles against 32-column panels), then mirrors them.
        var random = TestRandom(seed: 19)
        let saved = CPUFeatures.portableOnly.load(ordering: .relaxed)
        defer { CPUFeatures.portableOnly.store(saved, ordering: .relaxed) }
        for (n, k) in [(7, 3), (40, 300), (101, 37), (200, 520)] {
            for transA in [false, true] {
                let a = (0 ..< n * k).map { _ in random.float(in: -1 ... 1) }
                let lda = transA ? n : k
                var expected = [Double](repeating: 0, count: n * n)
                for i in 0 ..< n {
                    for j in 0 ..< n {
                        var sum = 0.0
                        for p in 0 ..< k {
                            let x = Double(transA ? a[p * lda + i] : a[i * lda + p])
                            let y = Double(transA ? a[p * lda + j] : a[j * lda + p])
                            sum += x * y
                        }
                        expected[i * n + j] = 2 * sum
                    }
                }
                for portable in [false, true] {
                    CPUFeatures.portableOnly.store(portable, ordering: .relaxed)
                    var sym = [Float](repeating: .nan, count: n * n)
                    try syrk(transA: transA, n: n, k: k, alpha: 2, a: a, lda: lda, c: &sym, ldc: n)
                    for i in 0 ..< n * n {
                        XCTAssertEqual(Double(sym[i]), expected[i], accuracy: 1e-5 * Double(k),
                                       "n=\(n) k=\(k) tA=\(transA) portable=\(portable) at \(i)")
                    }
                }
            }
        }
    }

    func testMicroKernelDirectly() throws {
        guard CPUFeatures.hasAVX512 else { throw XCTSkip("no AVX-512 on this CPU") }
        let k = 5, ldc = 35
        let a = (0 ..< 6 * k).map { Float($0 % 7) - 3 }
        let b = (0 ..< 32 * k).map { Float($0 % 11) - 5 }
        var c = (0 ..< 6 * ldc).map { Float($0 % 3) }
        let before = c
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    GEMMAVX512.microKernel6x32(k: k, a: a.baseAddress!, b: b.baseAddress!, alpha: 0.5,
                                               c: c.baseAddress!, ldc: ldc)
                }
            }
        }
        for r in 0 ..< 6 {
            for j in 0 ..< ldc {
                var expected = before[r * ldc + j]
                if j < 32 {
                    var sum: Float = 0
                    for p in 0 ..< k { sum += a[p * 6 + r] * b[p * 32 + j] }
                    expected += 0.5 * sum
                }
                XCTAssertEqual(c[r * ldc + j], expected, "(\(r), \(j))")
            }
        }
    }
}
