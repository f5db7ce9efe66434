import XCTest
@testable import SwiftPrune

/// CholeskyQR2: orthonormal rows spanning the same leading subspaces as the
/// input, and the Householder fallback on rank-deficient / ill-conditioned panels.
final class CholeskyQRTests: XCTestCase {
    func panel(_ count: Int, _ length: Int, seed: UInt64) -> [Float] {
        var random = TestRandom(seed: seed)
        return (0 ..< count * length).map { _ in random.float(in: -1 ... 1) }
    }

    /// max |QQᵀ - I| over the rows of q.
    func orthogonalityError(_ q: [Float], _ count: Int, _ length: Int) -> Float {
        var worst: Float = 0
        for i in 0 ..< count {
            for j in 0 ..< count {
                var dot: Double = 0
                for p in 0 ..< length { dot += Double(q[i * length + p]) * Double(q[j * length + p]) }
                worst = max(worst, abs(Float(dot) - (i == j ? 1 : 0)))
            }
        }
        return worst
    }

    /// Row i of y lies in the span of rows 0...i of q (Y = RᵀQ with R upper triangular):
    /// the residual of y_i after projecting on q_0...q_i is tiny.
    func assertSameLeadingSubspaces(_ y: [Float], _ q: [Float], _ count: Int, _ length: Int,
                                    file: StaticString = #filePath, line: UInt = #line) {
        for i in 0 ..< count {
            var r = (0 ..< length).map { Double(y[i * length + $0]) }
            let norm = r.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for j in 0 ... i {
                var dot: Double = 0
                for p in 0 ..< length { dot += r[p] * Double(q[j * length + p]) }
                for p in 0 ..< length { r[p] -= dot * Double(q[j * length + p]) }
            }
            let residual = r.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertLessThan(residual, 1e-4 * max(norm, 1e-30), "row \(i)", file: file, line: line)
        }
    }

    func testOrthonormalizesAWellConditionedPanel() throws {
        for (count, length) in [(1, 1), (3, 7), (17, 300), (40, 40)] {
            let y = panel(count, length, seed: UInt64(count * 1000 + length))
            var q = y
            let used = try q.withUnsafeMutableBufferPointer {
                try CholeskyQR.orthonormalizeRows($0.baseAddress!, count: count, length: length)
            }
            if count < length / 4 { XCTAssertTrue(used, "(\(count), \(length)) should not need the fallback") }
            XCTAssertLessThan(orthogonalityError(q, count, length), 2e-5, "(\(count), \(length))")
            assertSameLeadingSubspaces(y, q, count, length)
        }
    }

    func testSinglePassKeepsTheSubspace() throws {
        let count = 20, length = 500
        let y = panel(count, length, seed: 3)
        var q = y
        let used = try q.withUnsafeMutableBufferPointer {
            try CholeskyQR.orthonormalizeRows($0.baseAddress!, count: count, length: length, passes: 1)
        }
        XCTAssertTrue(used)
        XCTAssertLessThan(orthogonalityError(q, count, length), 1e-3)
        assertSameLeadingSubspaces(y, q, count, length)
    }

    func testRankDeficientPanelFallsBackToHouseholder() throws {
        // Row 3 = row 0 + row 1: the Gram matrix is singular.
        let count = 6, length = 50
        var y = panel(count, length, seed: 9)
        for p in 0 ..< length { y[3 * length + p] = y[p] + y[length + p] }
        var q = y
        let used = try q.withUnsafeMutableBufferPointer {
            try CholeskyQR.orthonormalizeRows($0.baseAddress!, count: count, length: length)
        }
        XCTAssertFalse(used)
        XCTAssertLessThan(orthogonalityError(q, count, length), 2e-5)
        assertSameLeadingSubspaces(y, q, count, length)
        // And the result is exactly Householder's.
        var h = y
        try h.withUnsafeMutableBufferPointer {
            try HouseholderQR.orthonormalizeRows($0.baseAddress!, count: count, length: length)
        }
        XCTAssertEqual(q, h)
    }

    func testIllConditionedPanelFallsBack() throws {
        let count = 5, length = 64
        var y = panel(count, length, seed: 11)
        for p in 0 ..< length { y[4 * length + p] *= 1e-4 }  // κ ≈ 1e4 > maximumCondition
        var q = y
        let used = try q.withUnsafeMutableBufferPointer {
            try CholeskyQR.orthonormalizeRows($0.baseAddress!, count: count, length: length, passes: 1)
        }
        XCTAssertFalse(used)
        XCTAssertLessThan(orthogonalityError(q, count, length), 2e-5)
    }

    func testBadSizesThrow() {
        let y = UnsafeMutablePointer<Float>.allocate(capacity: 12)
        defer { y.deallocate() }
        y.initialize(repeating: 1, count: 12)
        XCTAssertThrowsError(try CholeskyQR.orthonormalizeRows(y, count: 4, length: 3))
        XCTAssertThrowsError(try CholeskyQR.orthonormalizeRows(y, count: -1, length: 3))
        XCTAssertThrowsError(try CholeskyQR.orthonormalizeRows(y, count: 2, length: 3, passes: 3))
    }

    /// The one Householder QR, in both precisions: the orthonormal completion of a basis is
    /// orthonormal and orthogonal to the basis (Float and Double through the same generic code).
    func testOrthonormalComplementInBothPrecisions() {
        func check<T: HouseholderScalar>(_: T.Type, tolerance: Double) {
            let (r, length, count) = (5, 23, 12)
            var random = TestRandom(seed: 7)
            let basis = (0 ..< r * length).map { _ in T(random.float(in: -1 ... 1)) }
            var out = [T](repeating: 0, count: count * length)
            basis.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { o in
                    try! HouseholderQR.orthonormalComplement(of: b.baseAddress!, basisCount: r, length: length, count: count,
                                                        into: o.baseAddress!)
                }
            }
            func dot(_ x: [T], _ i: Int, _ y: [T], _ j: Int) -> Double {
                (0 ..< length).reduce(0.0) { $0 + Double(x[i * length + $1]) * Double(y[j * length + $1]) }
            }
            for i in 0 ..< count {
                for j in 0 ..< count {
                    XCTAssertEqual(dot(out, i, out, j), i == j ? 1 : 0, accuracy: tolerance, "\(T.self) rows \(i), \(j)")
                }
                for b in 0 ..< r {
                    let scale = dot(basis, b, basis, b).squareRoot()
                    XCTAssertEqual(dot(out, i, basis, b) / scale, 0, accuracy: tolerance, "\(T.self) row \(i), basis \(b)")
                }
            }
        }
        check(Float.self, tolerance: 1e-5)
        check(Double.self, tolerance: 1e-13)
    }
}
