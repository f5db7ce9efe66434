import CSwiftPrune
import SwiftPrune

/// The one choke point between Swift errors and C status codes: every export
/// runs its body through `withStatus`, so no error escapes as a trap and
/// every failure leaves a message in `sp_last_error()`.
@inline(__always)
func withStatus(_ body: () throws -> Void) -> sp_status {
    do {
        try body()
        return SP_OK
    } catch let error as SwiftPruneError {
        sp_internal_set_last_error(error.message)
        sp_internal_set_last_errno(error.code)
        return error.kind.rawValue
    } catch {
        sp_internal_set_last_error("internal error: \(error)")
        sp_internal_set_last_errno(0)
        return SP_ERR_INTERNAL
    }
}

/// Checks a C element count and wraps a C input pointer as a buffer.
@inline(__always)
func inputBuffer<T>(_ pointer: UnsafePointer<T>?, _ count: Int64, _ name: String) throws -> UnsafeBufferPointer<T> {
    guard count >= 0 else { throw SwiftPruneError.value("\(name): negative element count \(count)") }
    if count == 0 { return UnsafeBufferPointer(start: nil, count: 0) }
    guard let pointer else { throw SwiftPruneError.value("\(name) is NULL") }
    return UnsafeBufferPointer(start: pointer, count: Int(count))
}

/// Checks a C element count and wraps a C output pointer as a buffer.
@inline(__always)
func outputBuffer<T>(_ pointer: UnsafeMutablePointer<T>?, _ count: Int64, _ name: String) throws -> UnsafeMutableBufferPointer<T> {
    guard count >= 0 else { throw SwiftPruneError.value("\(name): negative element count \(count)") }
    if count == 0 { return UnsafeMutableBufferPointer(start: nil, count: 0) }
    guard let pointer else { throw SwiftPruneError.value("\(name) is NULL") }
    return UnsafeMutableBufferPointer(start: pointer, count: Int(count))
}

// `@_cdecl` alone does not compare a Swift export with its prototype in
// swiftprune.h. Every `X+CABI.swift` file ends with a function that assigns
// each of its exports to a variable whose type is inferred from the header's
// declaration (`var f = sp_name; implements(&f, spName)`): any difference in
// parameter or result types fails to build. (A generic `f<F>(_: F, _: F)`
// would not: Swift happily infers `F = Any`.)
@inline(__always)
func implements<F>(_ header: inout F, _ implementation: F) { header = implementation }
