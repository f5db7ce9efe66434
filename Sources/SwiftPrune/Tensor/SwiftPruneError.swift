/// An error thrown by every SwiftPrune function on bad input.
///
/// The `kind` maps one-to-one onto the C ABI status codes (`SP_ERR_VALUE`,
/// `SP_ERR_TYPE`, `SP_ERR_MEMORY`) and from there onto Python exceptions
/// (`ValueError`, `TypeError`, `MemoryError`).
public struct SwiftPruneError: Error, Equatable, CustomStringConvertible {
    public enum Kind: Int32, Sendable {
        /// A value, shape or range is wrong (Python `ValueError`).
        case invalidValue = 1
        /// An argument has the wrong kind, e.g. an unsupported dtype (Python `TypeError`).
        case invalidType = 2
        /// An allocation failed or a size overflows (Python `MemoryError`).
        case outOfMemory = 3
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public static func value(_ message: String) -> SwiftPruneError { .init(.invalidValue, message) }
    public static func type(_ message: String) -> SwiftPruneError { .init(.invalidType, message) }

    public var description: String { message }
}
