import XCTest
@testable import SwiftPrune

/// The randomized SVD's once-packed matrix: its thin products must equal
/// `gemm`'s on the AVX2 path bit for bit (same micro-kernel, depth blocks and
/// sums), for both layouts, ragged panels and depth blocks, and 1 or 2 workers.
final class PackedPanelsTests: XCTestCase {
    func testThinProductsEqualGEMMBitForBit() throws {
        let saved = CPUFeatures.portableOnly.load(ordering: .relaxed)
        CPUFeatures.portableOnly.store(true, ordering: .relaxed)
        defer {
            CPUFeatures.portableOnly.store(saved, ordering: .relaxed)
            try? Threading.setThreadCount(0)
        }
        // rows: whole and partial 6-row panels; depth: below, at and past the 256-deep
        // block, and not a multiple of 8 (the in-register packing's remainder);
        // n: partial and whole 16-column panels.
        for (rows, depth, n) in [(1, 1, 1), (6, 8, 16), (7, 9, 5), (13, 256, 17), (50, 300, 32),
                                 (96, 513, 33), (600, 700, 32)] {
            for transposed in [false, true] {
                for threads in [1, 2] {
                    try Threading.setThreadCount(threads)
                    try check(rows: rows, depth: depth, n: n, transposed: transposed)
                }
            }
        }
    }

    func check(rows: Int, depth: Int, n: Int, transposed: Bool) throws {
        var random = TestRandom(seed: UInt64(rows * 7919 + depth * 31 + n))
        // op(A) is rows × depth: A stored rows × depth, or depth × rows when transposed (padded rows).
        let lda = (transposed ? rows : depth) + 3, ldb = depth + 2
        let a = (0 ..< (transposed ? depth : rows) * lda).map { _ in random.float(in: -1 ... 1) }
        let b = (0 ..< n * ldb).map { _ in random.float(in: -1 ... 1) }
        var expected = [Float](repeating: .nan, count: rows * n)
        var actual = [Float](repeating: .nan, count: rows * n)
        try a.withUnsafeBufferPointer { a in
            try b.withUnsafeBufferPointer { b in
                try gemm(transA: transposed, transB: true, m: rows, n: n, k: depth, alpha: 1, a: a.baseAddress,
                         lda: lda, b: b.baseAddress, ldb: ldb, beta: 0, c: &expected, ldc: n)
                let packed = try PackedPanels(a.baseAddress!, lda: lda, transposed: transposed, rows: rows, depth: depth)
                defer { packed.free() }
                try actual.withUnsafeMutableBufferPointer { c in
                    try packed.multiply(b.baseAddress!, ldb: ldb, n: n, into: c.baseAddress!, ldc: n)
                }
            }
        }
        XCTAssertEqual(actual.map(\.bitPattern), expected.map(\.bitPattern),
                       "rows \(rows) depth \(depth) n \(n) transposed \(transposed)")
        // And against a float64 triple loop, so that both are not wrong together.
        for i in 0 ..< rows {
            for j in 0 ..< n {
                var sum = 0.0
                for p in 0 ..< depth {
                    sum += Double(transposed ? a[p * lda + i] : a[i * lda + p]) * Double(b[j * ldb + p])
                }
                XCTAssertEqual(Double(actual[i * n + j]), sum, accuracy: 1e-6 * Double(depth))
            }
        }
    }
}
