#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one helper of MappedFile.swift that SwiftPruneError.swift needs (the
/// main package defines it there; the parser alone does not map files).
func errnoText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}
