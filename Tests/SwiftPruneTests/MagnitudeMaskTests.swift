import XCTest
@testable import SwiftPrune

/// Reference mask: prune the first k of the indices sorted by (|x|, index).
func referenceMask<S: MagnitudeOrdered>(_ values: [S], k: Int) -> [Bool] {
    let order = values.indices.sorted { (values[$0].magnitude, $0) < (values[$1].magnitude, $1) }
    var mask = [Bool](repeating: true, count: values.count)
    for i in order.prefix(k) { mask[i] = false }
    return mask
}

final class MagnitudeMaskTests: XCTestCase {
    func testExactAgainstSortWithTiesAcrossSizes() throws {
        var random = TestRandom(seed: 7)
        for n in [0, 1, 2, 5, 31, 1000, 200_001] {
            let values: [Float] = (0 ..< n).map { _ in Float(Int(random.next() % 20) - 10) * 0.5 }
            for sparsity in [0.0, 0.1, 0.5, 0.73, 1.0] {
                let w = try Tensor(shape: [n], scalars: values)
                let mask = try magnitudeMask(w, sparsity: sparsity)
                let k = Int((sparsity * Double(n)).rounded(.toNearestOrEven))
                XCTAssertEqual(mask.scalars, referenceMask(values, k: k), "n=\(n) sparsity=\(sparsity)")
            }
        }
    }

    func testPrunedCountRoundsHalfToEven() throws {
        XCTAssertEqual(try prunedCount(sparsity: 0.5, of: 5), 2)   // round(2.5) == 2
        XCTAssertEqual(try prunedCount(sparsity: 0.5, of: 7), 4)   // round(3.5) == 4
        XCTAssertEqual(try prunedCount(sparsity: 0.3, of: 10), 3)
        XCTAssertEqual(try prunedCount(sparsity: 1, of: 0), 0)
        XCTAssertThrowsError(try prunedCount(sparsity: -0.1, of: 10))
        XCTAssertThrowsError(try prunedCount(sparsity: 1.5, of: 10))
        XCTAssertThrowsError(try prunedCount(sparsity: .nan, of: 10))
    }

    func testPruneMagnitudeZeroesTheSmallest() throws {
        let w = try Tensor<Double>(shape: [2, 3], scalars: [0.1, -2, 0.3, 4, -0.05, 0.6])
        let pruned = try pruneMagnitude(w, sparsity: 0.5)
        XCTAssertEqual(pruned.shape, [2, 3])
        XCTAssertEqual(pruned.scalars, [0, -2, 0, 4, 0, 0.6])
    }

    func testBadInputThrowsValueErrors() throws {
        let w = try Tensor<Float>(shape: [3], scalars: [1, .nan, 2])
        XCTAssertThrowsError(try magnitudeMask(w, sparsity: 0.5)) { error in
            XCTAssertEqual((error as? SwiftPruneError)?.kind, .invalidValue)
        }
        XCTAssertThrowsError(try Tensor<Float>(shape: [2, 2], scalars: [1, 2, 3]))
        XCTAssertThrowsError(try Tensor<Float>(shape: [-1], scalars: []))
    }

    func testThreadCountSetting() throws {
        XCTAssertGreaterThanOrEqual(Threading.threadCount, 1)
        try Threading.setThreadCount(3)
        XCTAssertEqual(Threading.threadCount, 3)
        try Threading.setThreadCount(0)
        XCTAssertGreaterThanOrEqual(Threading.threadCount, 1)
        XCTAssertThrowsError(try Threading.setThreadCount(-1))
    }
}
