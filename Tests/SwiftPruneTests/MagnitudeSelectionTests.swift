import XCTest
@testable import SwiftPrune

/// A small deterministic generator so tests need no Foundation and are repeatable.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float(in range: ClosedRange<Float>) -> Float {
        range.lowerBound + Float(next() >> 40) / Float(1 << 24) * (range.upperBound - range.lowerBound)
    }
}

/// The reference: sort (|x|, index) pairs and read off rank k.
func sortedReference<S: MagnitudeOrdered>(_ values: [S], k: Int) -> (key: S.MagnitudeKey, below: Int, equal: Int) {
    let keys = values.map(\.magnitudeKey).sorted()
    let key = keys[k - 1]
    return (key, keys.filter { $0 < key }.count, keys.filter { $0 == key }.count)
}

final class MagnitudeSelectionTests: XCTestCase {
    func select<S: MagnitudeOrdered>(_ values: [S], k: Int) throws -> MagnitudeThreshold<S.MagnitudeKey>? {
        try values.withUnsafeBufferPointer { try MagnitudeSelection.select(SegmentedBuffer([$0]), k: k) }
    }

    func testMatchesSortOnRandomDataWithTies() throws {
        var random = TestRandom(seed: 1)
        for n in [1, 2, 3, 17, 1000, 70_001, 300_000] {
            // Values drawn from a small set make many ties; signs make |x| matter.
            let values: [Float] = (0 ..< n).map { _ in
                let v = Float(random.next() % 50) * 0.25
                return random.next() % 2 == 0 ? v : -v
            }
            for k in Set([1, n / 3 + 1, n / 2, n]) where k >= 1 {
                let got = try XCTUnwrap(try select(values, k: k))
                let want = sortedReference(values, k: k)
                XCTAssertEqual(got.key, want.key, "n=\(n) k=\(k)")
                XCTAssertEqual(got.countBelow, want.below, "n=\(n) k=\(k)")
                XCTAssertEqual(got.countEqual, want.equal, "n=\(n) k=\(k)")
            }
        }
    }

    func testMatchesSortOnContinuousDoubles() throws {
        var random = TestRandom(seed: 2)
        let values: [Double] = (0 ..< 100_000).map { _ in Double(random.float(in: -3 ... 3)) * 1e-3 }
        for k in [1, 500, 50_000, 99_999, 100_000] {
            let got = try XCTUnwrap(try select(values, k: k))
            let want = sortedReference(values, k: k)
            XCTAssertEqual(got.key, want.key)
            XCTAssertEqual(got.countBelow, want.below)
            XCTAssertEqual(got.countEqual, want.equal)
        }
    }

    func testSegmentsActAsOneSequence() throws {
        var random = TestRandom(seed: 3)
        let parts: [[Float]] = [0, 5, 100_000, 1, 33_333].map { n in (0 ..< n).map { _ in random.float(in: -1 ... 1) } }
        let all = parts.flatMap { $0 }
        let buffers = parts.map { part in
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: part.count)
            _ = p.initialize(from: part)
            return UnsafeBufferPointer(p)
        }
        defer { buffers.forEach { $0.deallocate() } }
        for k in [1, 77, all.count / 2, all.count] {
            let got = try XCTUnwrap(try MagnitudeSelection.select(SegmentedBuffer(buffers), k: k))
            XCTAssertEqual(got.key, sortedReference(all, k: k).key)
        }
    }

    func testRejectsNaNInfAndBadK() throws {
        for bad: Float in [.nan, .infinity, -.infinity] {
            XCTAssertThrowsError(try select([1, 2, bad, 3], k: 1))
            XCTAssertThrowsError(try select([1, 2, bad, 3], k: 0))
        }
        XCTAssertThrowsError(try select([1, 2, 3] as [Float], k: 4))
        XCTAssertThrowsError(try select([1, 2, 3] as [Float], k: -1))
        XCTAssertNil(try select([] as [Float], k: 0))
    }
}
