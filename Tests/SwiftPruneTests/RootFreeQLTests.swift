import XCTest
@testable import SwiftPrune

/// The root-free QL eigenvalues of symmetric tridiagonal matrices against
/// closed forms (tridiagonal Toeplitz matrices: `a + 2b cos(kπ / (n + 1))`),
/// across scalings that need its power-of-two rescaling, split matrices, and
/// against the hypot-based QL (an independent algorithm) on hard spectra.
final class RootFreeQLTests: XCTestCase {
    /// The eigenvalues, ascending, by `rootFreeQLValues` (which must converge).
    func rootFree(_ d: [Double], _ e: [Double], file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        var d = d, e = e + [0]
        let n = d.count
        let converged = d.withUnsafeMutableBufferPointer { d in
            e.withUnsafeMutableBufferPointer { e in
                SymmetricEigen.rootFreeQLValues(d: d.baseAddress!, e: e.baseAddress!, n: n)
            }
        }
        XCTAssertTrue(converged, file: file, line: line)
        return d
    }

    /// `a + 2b cos(kπ / (n + 1))`, k = 1 ... n, ascending.
    func toeplitzValues(_ a: Double, _ b: Double, _ n: Int) -> [Double] {
        (1 ... n).map { a + 2 * b * cos(Double($0) * Double.pi / Double(n + 1)) }.sorted()
    }

    func assertClose(_ got: [Double], _ want: [Double], relativeTo norm: Double, tolerance: Double = 1e-13,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, file: file, line: line)
        for (g, w) in zip(got, want) {
            XCTAssertEqual(g, w, accuracy: tolerance * norm, file: file, line: line)
        }
    }

    func testToeplitzMatricesMatchTheClosedForm() {
        for n in [1, 2, 3, 4, 17, 128, 500] {
            for (a, b) in [(2.0, -1.0), (0.0, 1.0), (-3.5, 0.25), (1.0, 3.0)] {
                let got = rootFree([Double](repeating: a, count: n), [Double](repeating: b, count: max(0, n - 1)))
                assertClose(got, toeplitzValues(a, b, n), relativeTo: abs(a) + 2 * abs(b))
            }
        }
    }

    func testExtremeScalesAreRescaledExactly() {
        // The squared off-diagonal of 1e±200 entries would overflow / underflow without the rescaling.
        let n = 60
        for scale in [1e-300, 1e-200, 1e-150, 1e150, 1e200, 1e300] {
            let got = rootFree([Double](repeating: 2 * scale, count: n), [Double](repeating: -scale, count: n - 1))
            assertClose(got, toeplitzValues(2 * scale, -scale, n), relativeTo: 4 * scale)
        }
    }

    func testSplitMatrixIsTheUnionOfItsBlocks() {
        // Blocks of 5, 1, 9 and 2 (zero off-diagonal entries between them), each Toeplitz.
        let blocks: [(n: Int, a: Double, b: Double)] = [(5, 1, 2), (1, -7, 0), (9, 4, -0.5), (2, 0, 1e-3)]
        var d: [Double] = [], e: [Double] = [], want: [Double] = []
        for (index, block) in blocks.enumerated() {
            if index > 0 { e.append(0) }
            d += [Double](repeating: block.a, count: block.n)
            e += [Double](repeating: block.b, count: block.n - 1)
            want += block.n == 1 ? [block.a] : toeplitzValues(block.a, block.b, block.n)
        }
        assertClose(rootFree(d, e), want.sorted(), relativeTo: 8)
    }

    func testHardSpectraAgreeWithHypotQL() {
        var random = TestRandom(seed: 91)
        let n = 200
        let cases: [(String, [Double], [Double])] = [
            // Wilkinson W(n)+: nearly equal pairs.
            ("wilkinson", (0 ..< n).map { Double(abs(n / 2 - $0)) }, [Double](repeating: 1, count: n - 1)),
            // Graded: entries over 40 orders of magnitude.
            ("graded", (0 ..< n).map { pow(10, -Double($0) / 5) }, (0 ..< n - 1).map { pow(10, -Double($0) / 5 - 0.1) }),
            // Random, and random with a tiny off-diagonal (near splits).
            ("random", (0 ..< n).map { _ in Double(random.float(in: -1 ... 1)) },
             (0 ..< n - 1).map { _ in Double(random.float(in: -1 ... 1)) }),
            ("near split", (0 ..< n).map { _ in Double(random.float(in: -1 ... 1)) },
             (0 ..< n - 1).map { i in i % 7 == 3 ? 1e-17 : Double(random.float(in: -1 ... 1)) }),
        ]
        for (name, d, e) in cases {
            var qd = d, qe = e + [0]
            SymmetricEigen.ql(d: &qd, e: &qe, zt: nil, n: n)
            qd.sort()
            let norm = d.map(abs).max()! + 2 * e.map(abs).max()!
            let got = rootFree(d, e)
            for (g, w) in zip(got, qd) {
                XCTAssertEqual(g, w, accuracy: 1e-13 * norm, name)
            }
        }
    }

    func testTwoByTwoEigenvalues() {
        for (a, b, c) in [(1.0, 2.0, 3.0), (-4.0, 0.5, 4.0), (1e-20, 1e-20, -1e-20), (5.0, 0.0, 5.0)] {
            let (first, second) = SymmetricEigen.eigenvalues2x2(a, b, c)
            let mean = (a + c) / 2, radius = ((a - c) * (a - c) / 4 + b * b).squareRoot()
            let want = [mean - radius, mean + radius]
            let scale = max(abs(a), abs(b), abs(c))
            XCTAssertEqual(min(first, second), want[0], accuracy: 1e-15 * scale)
            XCTAssertEqual(max(first, second), want[1], accuracy: 1e-15 * scale)
            XCTAssertGreaterThanOrEqual(abs(first), abs(second))
        }
    }
}
