import Crypto
import GantryCore
public import HTTPTypes

/// The address of the client a gateway relays for, told to the control role with a proof that
/// only a holder of the service credential can make, so the control's per-address slowdown of
/// failed authentication falls on that client and not on the gateway (whose address is every
/// client's behind it). A header from anyone else is ignored: the control then uses the peer's
/// address, as for any direct caller.
public enum ForwardedClient {
    static let addressField = HTTPField.Name("x-gantry-client-address")!
    static let proofField = HTTPField.Name("x-gantry-client-proof")!
    /// Gantry's own; a client's copies are dropped before a gateway relays a request.
    static let names: Set<String> = [addressField.canonicalName, proofField.canonicalName]

    /// HMAC-SHA256 of the address under the service credential, hex.
    static func proof(address: String, secret: String) -> String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(address.utf8), using: SymmetricKey(data: Array(secret.utf8))))
    }

    /// The client's address when the request carries one with a valid proof.
    static func address(in headers: HTTPFields, secret: String?) -> String? {
        guard let secret, let address = headers[addressField], let presented = headers[proofField],
            address.utf8.count <= 64
        else { return nil }
        return constantTimeEqual(presented, proof(address: address, secret: secret)) ? address : nil
    }
}
