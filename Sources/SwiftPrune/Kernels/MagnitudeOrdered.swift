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
}

extension Float: MagnitudeOrdered {
    @inlinable public var magnitudeKey: UInt32 { bitPattern & 0x7FFF_FFFF }
    @inlinable public static var infinityKey: UInt32 { 0x7F80_0000 }
    @inlinable public static var magnitudeKeyBits: Int { 31 }
}

extension Double: MagnitudeOrdered {
    @inlinable public var magnitudeKey: UInt64 { bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
    @inlinable public static var infinityKey: UInt64 { 0x7FF0_0000_0000_0000 }
    @inlinable public static var magnitudeKeyBits: Int { 63 }
}
