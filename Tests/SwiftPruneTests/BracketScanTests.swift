import Synchronization
import Testing
@testable import SwiftPrune

/// The float32 scan of the sampled magnitude writer (the C kernel for whole
/// steps of 32, the Swift loop for the tail) against a plain per-element
/// transcription of its contract: mask bytes `key > guess`, the count below
/// `lo`, the largest key, and the in-bracket records in flat order with
/// their bucket counts.
@Suite struct BracketScanTests {
    /// Gaussian values with exact copies of the bounds, ±0, subnormals,
    /// and optionally Inf and NaN (the largest-key watch must see them).
    static func values(count: Int, bounds: [Float], nonFinite: Bool, seed: UInt64) -> [Float] {
        var generator = Xoshiro256StarStar(seed: seed)
        return (0 ..< count).map { i in
            switch generator.uniform(below: 16) {
            case 0: return bounds[Int(generator.uniform(below: UInt64(bounds.count)))] * (i % 2 == 0 ? 1 : -1)
            case 1: return i % 2 == 0 ? 0 : -0.0
            case 2: return Float(bitPattern: UInt32(truncatingIfNeeded: generator.next() & 0x807F_FFFF))  // subnormal
            case 3 where nonFinite: return i % 2 == 0 ? .infinity : .nan
            default:
                let u = (Double(generator.next() >> 11) + 0.5) / 9_007_199_254_740_992
                return Float(2 * u - 1) * 2.5
            }
        }
    }

    @Test(arguments: [(1000, false, false), (1031, true, false), (4096 + 17, false, true), (31, false, false)])
    func scanMatchesPerElementDefinition(count: Int, openTop: Bool, nonFinite: Bool) throws {
        let lo = Float(0.4), guess = Float(0.5), hi = Float(0.55)
        let values = Self.values(count: count, bounds: [lo, guess, hi, 0.7], nonFinite: nonFinite, seed: UInt64(count))
        let bracket = MagnitudeBracket<UInt32>(lo: lo.magnitudeKey, guess: guess.magnitudeKey,
                                               hi: openTop ? .max : hi.magnitudeKey)
        // Reference: the contract, element by element.
        var wantMask = [Bool](), wantKeys = [UInt64](), wantOffsets = [Int](), wantBelow = 0, wantWorst: UInt32 = 0
        var wantHistogram = [UInt32](repeating: 0, count: bracket.bucketCount)
        for (i, v) in values.enumerated() {
            let key = v.bitPattern & 0x7FFF_FFFF
            wantWorst = max(wantWorst, key)
            wantMask.append(key > bracket.guess)
            if key < bracket.lo { wantBelow += 1 }
            if key >= bracket.lo && key <= bracket.hi {
                wantKeys.append(UInt64(key))
                wantOffsets.append(i)
                wantHistogram[Int((key - bracket.lo) >> UInt32(bracket.shift))] += 1
            }
        }
        for streamed in [false, true] {
            // 32-byte aligned mask (the streamed stores need it), one byte of slack after.
            let mask = try FallibleAllocation.allocate(Bool.self, count: count + 1)
            defer { FallibleAllocation.free(mask) }
            mask.initialize(repeating: false, count: count + 1)
            let keys = UnsafeMutablePointer<UInt64>.allocate(capacity: count)
            defer { keys.deallocate() }
            let places = UnsafeMutablePointer<UnsafeMutablePointer<Bool>>.allocate(capacity: count)
            defer { places.deallocate() }
            var histogram = [UInt32](repeating: 0, count: bracket.bucketCount)
            let (worst, below, found) = values.withUnsafeBufferPointer { v in
                histogram.withUnsafeMutableBufferPointer { h in
                    scanMagnitudeBracket(v.baseAddress!, count, bracket, mask: mask,
                                         streamed: streamed && count >= 32, keys: keys, places: places,
                                         histogram: h.baseAddress!)
                }
            }
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            #expect(Array(UnsafeBufferPointer(start: mask, count: count)) == wantMask, "streamed \(streamed)")
            #expect(mask[count] == false, "no byte written past the end")
            #expect(worst == wantWorst)
            #expect(below == wantBelow)
            #expect(found == wantKeys.count)
            #expect(Array(UnsafeBufferPointer(start: keys, count: found)) == wantKeys)
            #expect((0 ..< found).map { places[$0] - mask } == wantOffsets)
            #expect(histogram == wantHistogram)
        }
    }
}
