import XCTest
@testable import SwiftPrune

final class BitPackingTests: XCTestCase {
    /// The stream written one bit at a time: value i's bit j at stream bit i*bits + j.
    private func referencePack(_ values: [UInt8], bits: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (values.count * bits + 7) / 8)
        for (i, v) in values.enumerated() {
            for j in 0 ..< bits where (v >> j) & 1 == 1 {
                let bit = i * bits + j
                out[bit / 8] |= 1 << (bit % 8)
            }
        }
        return out
    }

    func testPackMatchesBitByBitReferenceAndRoundTrips() throws {
        var state: UInt64 = 0x9E3779B97F4A7C15
        for bits in 1 ... 8 {
            for count in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 70_001] {
                let values: [UInt8] = (0 ..< count).map { _ in
                    state = state &* 6364136223846793005 &+ 1442695040888963407
                    return UInt8(truncatingIfNeeded: state >> 33)
                }
                let low = values.map { $0 & UInt8((1 << bits) - 1) }
                var packed = [UInt8](repeating: 0xAA, count: BitPacking.packedCount(count, bits: bits))
                try values.withUnsafeBufferPointer { v in
                    try packed.withUnsafeMutableBufferPointer { try BitPacking.pack(v, bits: bits, into: $0) }
                }
                XCTAssertEqual(packed, referencePack(low, bits: bits), "bits \(bits), count \(count)")
                var back = [UInt8](repeating: 0, count: count)
                try packed.withUnsafeBufferPointer { p in
                    try back.withUnsafeMutableBufferPointer { try BitPacking.unpack(p, bits: bits, signed: false, into: $0) }
                }
                XCTAssertEqual(back, low)
                try packed.withUnsafeBufferPointer { p in
                    try back.withUnsafeMutableBufferPointer { try BitPacking.unpack(p, bits: bits, signed: true, into: $0) }
                }
                let signed = low.map { v -> UInt8 in
                    let shift = 8 - bits
                    return UInt8(bitPattern: Int8(bitPattern: v << shift) >> shift)
                }
                XCTAssertEqual(back, signed)
            }
        }
    }

    func testBadArgumentsThrow() throws {
        let values: [UInt8] = [1, 2, 3]
        var out = [UInt8](repeating: 0, count: 1)
        try values.withUnsafeBufferPointer { v in
            try out.withUnsafeMutableBufferPointer { o in
                XCTAssertThrowsError(try BitPacking.pack(v, bits: 0, into: o))
                XCTAssertThrowsError(try BitPacking.pack(v, bits: 9, into: o))
                XCTAssertThrowsError(try BitPacking.pack(v, bits: 3, into: o))  // needs 2 bytes
            }
        }
    }
}
