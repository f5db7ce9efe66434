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
        /// An operating-system call failed, with the C `errno` in ``SwiftPruneError/code``: a missing
        /// file, a directory where a file was expected, no permission, a full disk (Python: the
        /// `OSError` subclass for that errno, e.g. `FileNotFoundError`).
        case system = 5
    }

    public let kind: Kind
    public let message: String
    /// The C `errno` of a ``Kind/system`` error; 0 for every other kind.
    public let code: Int32

    public init(_ kind: Kind, _ message: String, code: Int32 = 0) {
        self.kind = kind
        self.message = message
        self.code = code
    }

    public static func value(_ message: String) -> SwiftPruneError { .init(.invalidValue, message) }
    public static func type(_ message: String) -> SwiftPruneError { .init(.invalidType, message) }
    /// A failed system call: `message` (what was attempted) followed by the text of `errno`.
    public static func system(_ message: String, errno code: Int32) -> SwiftPruneError {
        .init(.system, "\(message): \(errnoText(code))", code: code)
    }

    public var description: String { message }
}
