import XCTest
@testable import SwiftPrune

/// The lane-batched tridiagonal solver of inverse iteration against the
/// scalar solver it batches (bit for bit), and the blocked back-transformation
/// on orders whose chunk copies are padded, against the defining identities.
final class EigenSolverLanesTests: XCTestCase {
    /// A random symmetric tridiagonal matrix of order `n` (d in [-2, 2], e in [-1, 1]).
    func tridiagonal(_ n: Int, seed: UInt64) -> (d: [Double], e: [Double]) {
        var random = TestRandom(seed: seed)
        let d = (0 ..< n).map { _ in 2 * Double(random.float(in: -1 ... 1)) }
        let e = (0 ..< n).map { $0 + 1 < n ? Double(random.float(in: -1 ... 1)) : 0 }
        return (d, e)
    }

    /// Factors, solves twice and normalizes each lane with both solvers; every value must be identical.
    func assertLanesMatchScalar(d: [Double], e: [Double], shifts: [Double], starts: [[Double]], tiny: Double,
                                file: StaticString = #filePath, line: UInt = #line) throws {
        let n = d.count, width = TridiagonalSolverLanes.width
        let lanes = try TridiagonalSolverLanes(n: n), scalar = try TridiagonalSolver(n: n)
        var x = [TridiagonalSolverLanes.Lanes](repeating: .init(), count: n)
        var shiftLanes = TridiagonalSolverLanes.Lanes()
        for l in 0 ..< width {
            shiftLanes[l] = shifts[l]
            for i in 0 ..< n { x[i][l] = starts[l][i] }
        }
        d.withUnsafeBufferPointer { d in
            e.withUnsafeBufferPointer { e in lanes.factor(d: d, e: e, shifts: shiftLanes, tiny: tiny) }
        }
        x.withUnsafeMutableBufferPointer { x in
            for _ in 0 ..< 2 {
                lanes.solve(x.baseAddress!)
                lanes.normalize(x.baseAddress!)
            }
        }
        for l in 0 ..< width {
            d.withUnsafeBufferPointer { d in
                e.withUnsafeBufferPointer { e in scalar.factor(d: d, e: e, shift: shifts[l], tiny: tiny) }
            }
            var b = starts[l]
            b.withUnsafeMutableBufferPointer { b in
                for _ in 0 ..< 2 {
                    scalar.solve(b.baseAddress!)
                    let length = dot(b.baseAddress!, b.baseAddress!, n).squareRoot()
                    let scale = length > 0 && length.isFinite ? 1 / length : 0
                    for i in 0 ..< n { b[i] *= scale }
                }
            }
            for i in 0 ..< n {
                XCTAssertEqual(x[i][l].bitPattern, b[i].bitPattern, "lane \(l), entry \(i)", file: file, line: line)
            }
        }
    }

    func testLaneSolverIsBitIdenticalToScalarSolver() throws {
        let width = TridiagonalSolverLanes.width
        for (n, seed) in [(1, 1), (2, 2), (7, 3), (37, 4), (200, 5)] as [(Int, UInt64)] {
            let (d, e) = tridiagonal(n, seed: seed)
            var random = TestRandom(seed: seed + 100)
            // Shifts on diagonal entries (zero pivots where e vanishes), between them and outside the spectrum.
            let shifts = (0 ..< width).map { l in l % 3 == 0 ? d[l % n] : 3 * Double(random.float(in: -1 ... 1)) }
            let starts = (0 ..< width).map { _ in (0 ..< n).map { _ in Double(random.float(in: -1 ... 1)) } }
            try assertLanesMatchScalar(d: d, e: e, shifts: shifts, starts: starts, tiny: 1e-16)
        }
    }

    func testLaneSolverRescalesOnlyTheLanesThatGrow() throws {
        // A diagonal matrix (e = 0) shifted by its own diagonal: every pivot is zero and becomes `tiny`,
        // so a start of 1e140 grows past the 1e150 rescaling threshold in the lanes that hold it.
        let n = 19, width = TridiagonalSolverLanes.width
        let d = (0 ..< n).map { 1 + Double($0) }, e = [Double](repeating: 0, count: n)
        let shifts: [Double] = (0 ..< width).map { l in l % 2 == 0 ? 1.0 : 0.5 }
        // Lanes 0 and 4 (shift 1: a zero first pivot) start at 1e140 and grow to 1e155; the others do not.
        var starts: [[Double]] = []
        for l in 0 ..< width {
            let size: Double = l % 4 == 0 ? 1e140 : 1
            starts.append((0 ..< n).map { i in size * Double(i + 1) })
        }
        try assertLanesMatchScalar(d: d, e: e, shifts: shifts, starts: starts, tiny: 1e-15)
    }

    func testEigenvectorsOnOrdersWithPaddedBackTransformRows() throws {
        // n = 256 and 320: rows of Zᵀ 2 KiB / 2.5 KiB apart are copied with padded strides. The matrix is
        // H diag(C, C, E) H for random symmetric C (n/4) and E (n/2) and a Householder reflection H: every
        // eigenvalue of C is double (clusters of two, solved one by one with orthogonalization), those of E
        // are alone (solved in lane groups).
        for n in [256, 320] {
            XCTAssertGreaterThan(SymmetricEigen.paddedStride(n), n)
            var random = TestRandom(seed: UInt64(n))
            let quarter = n / 4
            var a = [Double](repeating: 0, count: n * n)
            func fillRandomSymmetric(at offset: Int, size: Int) {
                for i in 0 ..< size {
                    for j in i ..< size {
                        let value = Double(random.float(in: -1 ... 1))
                        a[(offset + i) * n + offset + j] = value
                        a[(offset + j) * n + offset + i] = value
                    }
                }
            }
            fillRandomSymmetric(at: 0, size: quarter)
            for i in 0 ..< quarter {
                for j in 0 ..< quarter { a[(quarter + i) * n + quarter + j] = a[i * n + j] }
            }
            fillRandomSymmetric(at: 2 * quarter, size: n - 2 * quarter)
            // A ← H A H with H = I − 2 v vᵀ / vᵀv (rows, then columns).
            let v = (0 ..< n).map { _ in Double(random.float(in: -1 ... 1)) }
            let s = v.reduce(0) { $0 + $1 * $1 }
            for _ in 0 ..< 2 {
                var vtA = [Double](repeating: 0, count: n)
                for i in 0 ..< n { for j in 0 ..< n { vtA[j] += v[i] * a[i * n + j] } }
                for i in 0 ..< n { for j in 0 ..< n { a[i * n + j] -= 2 * v[i] * vtA[j] / s } }
                // Transpose: the second pass applies H on the other side (A is symmetric again after it).
                for i in 0 ..< n { for j in 0 ..< i { (a[i * n + j], a[j * n + i]) = (a[j * n + i], a[i * n + j]) } }
            }
            let original = a
            let values = try a.withUnsafeMutableBufferPointer { try SymmetricEigen.decompose($0.baseAddress!, n: n) }
            // Every eigenvalue of C is double: the spectrum holds n/4 pairs equal to rounding.
            var pairs = 0
            for j in 1 ..< n where abs(values[j] - values[j - 1]) < 1e-12 { pairs += 1 }
            XCTAssertGreaterThanOrEqual(pairs, quarter)
            try checkEigenpairs(original, a, values, n: n)
        }
    }

    func checkEigenpairs(_ original: [Double], _ w: [Double], _ values: [Double], n: Int) throws {
        var worstOrthogonality = 0.0, worstResidual = 0.0
        original.withUnsafeBufferPointer { a in
            w.withUnsafeBufferPointer { w in
                for p in 0 ..< n {
                    for q in 0 ... p {
                        let product = dot(w.baseAddress! + p * n, w.baseAddress! + q * n, n)
                        worstOrthogonality = max(worstOrthogonality, abs(product - (p == q ? 1 : 0)))
                    }
                    for i in 0 ..< n {   // A v = λ v
                        let av = dot(a.baseAddress! + i * n, w.baseAddress! + p * n, n)
                        worstResidual = max(worstResidual, abs(av - values[p] * w[p * n + i]))
                    }
                }
            }
        }
        XCTAssertLessThan(worstOrthogonality, 1e-12)
        XCTAssertLessThan(worstResidual, 1e-12)
    }
}
