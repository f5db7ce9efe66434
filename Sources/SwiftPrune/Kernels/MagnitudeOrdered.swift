/// A floating-point type whose magnitudes order exactly like unsigned
/// integers: clearing the sign bit of an IEEE-754 bit pattern gives a key
/// with `|a| < |b|  ⇔  key(a) < key(b)` for every non-NaN value. Selection
/// by magnitude then becomes integer radix selection, with no sort.
public protocol MagnitudeOrdered: BinaryFloatingPoint {
    associatedtype MagnitudeKey: FixedWidthInteger & UnsignedInteger
    /// The bit pattern of `|self|`.
    var magnitudeKey: MagnitudeKey { get }
    /// The key of +infinity; keys at or above it are Inf or NaN.
    static var infinityKey: MagnitudeKey { get }
    /// The number of meaningful key bits (the sign bit excluded).
    static var magnitudeKeyBits: Int { get }
    /// Appends to `out` every key of `buffer[range]` whose `key >> shift`
    /// equals `digit`, in order, and returns how many it wrote. `out` has room
    /// for all of them (the caller counted them in a histogram).
    static func gatherKeys(
        _ buffer: UnsafeBufferPointer<Self>, _ range: Range<Int>, shift: Int, digit: MagnitudeKey,
        into out: UnsafeMutablePointer<MagnitudeKey>) -> Int
}

extension MagnitudeOrdered {
    /// The portable scalar gather.
    @inlinable
    public static func gatherKeys(
        _ buffer: UnsafeBufferPointer<Self>, _ range: Range<Int>, shift: Int, digit: MagnitudeKey,
        into out: UnsafeMutablePointer<MagnitudeKey>) -> Int {
        var written = 0
        for i in range {
            let key = buffer[i].magnitudeKey
            if key >> shift == digit { out[written] = key; written += 1 }
        }
        return written
    }
}

extension Float: MagnitudeOrdered {
    @inlinable public var magnitudeKey: UInt32 { bitPattern & 0x7FFF_FFFF }
    @inlinable public static var infinityKey: UInt32 { 0x7F80_0000 }
    @inlinable public static var magnitudeKeyBits: Int { 31 }

    /// The gather on concrete `SIMD8<Int32>` lanes: the standard library
    /// lowers `.==` on concrete integer vectors to one vector compare but on
    /// generic vectors to a per-lane loop. Keys have the sign bit clear, so
    /// they shift and compare correctly as `Int32`.
    public static func gatherKeys(
        _ buffer: UnsafeBufferPointer<Float>, _ range: Range<Int>, shift: Int, digit: UInt32,
        into out: UnsafeMutablePointer<UInt32>) -> Int {
        typealias Lanes = SIMD8<Int32>
        let raw = UnsafeRawPointer(buffer.baseAddress!)
        let signMask = Lanes(repeating: 0x7FFF_FFFF), digitV = Lanes(repeating: Int32(bitPattern: digit))
        let shiftV = Lanes(repeating: Int32(shift))
        var written = 0
        var i = range.lowerBound
        while i + 8 <= range.upperBound {
            let key = raw.loadUnaligned(fromByteOffset: i &* 4, as: Lanes.self) & signMask
            let hit = (key &>> shiftV) .== digitV
            if any(hit) {
                for lane in 0 ..< 8 where hit[lane] { out[written] = UInt32(bitPattern: key[lane]); written += 1 }
            }
            i &+= 8
        }
        for j in i ..< range.upperBound {
            let key = buffer[j].magnitudeKey
            if key >> shift == digit { out[written] = key; written += 1 }
        }
        return written
    }
}

extension Double: MagnitudeOrdered {
    @inlinable public var magnitudeKey: UInt64 { bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
    @inlinable public static var infinityKey: UInt64 { 0x7FF0_0000_0000_0000 }
    @inlinable public static var magnitudeKeyBits: Int { 63 }
}
