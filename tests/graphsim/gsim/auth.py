"""The Entra ID token endpoint (client-credentials grant) and bearer-token checks.

Client authentication: a client secret (form field or HTTP Basic), or a JWT client
assertion signed with the registered certificate's key (PS256 + x5t#S256, or the
older RS256 + x5t), verified here in pure Python."""
import base64
import hmac
import json
import secrets
import time
from urllib.parse import parse_qs, unquote_plus

from . import rsa
from .errors import AadError, GraphError
from .util import b64url_decode, json_response

GRANT = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH_RESOURCE = "https://graph.microsoft.com"
CLOCK_SKEW = 300          # seconds of client clock skew tolerated on nbf
MAX_ASSERTION_LIFE = 3600


class Auth:
    def __init__(self):
        self.tokens = {}    # access token -> expiry (simulator clock)

    def expire_all(self):
        self.tokens.clear()

    def issue(self, now, lifetime):
        if len(self.tokens) > 1000:
            self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
        token = "gsim." + secrets.token_urlsafe(40)
        self.tokens[token] = now + lifetime
        return token

    def check_bearer(self, header, now):
        """Raise 401 InvalidAuthenticationToken unless the header holds a live token."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthenticated("Access token is empty.")
        expiry = self.tokens.get(token)
        if expiry is None:
            raise _unauthenticated("CompactToken parsing failed with error code: 80049217")
        if expiry <= now:
            raise _unauthenticated("Lifetime validation failed, the token is expired.")


def _unauthenticated(message):
    challenge = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                 'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"')
    return GraphError(401, "InvalidAuthenticationToken", message,
                      {"WWW-Authenticate": challenge})


# --- token endpoint -------------------------------------------------------------------
def token_endpoint(sim, req, tenant_name):
    """POST /{tenant}/oauth2/v2.0/token -> access token or an Entra error."""
    tenant = sim.tenant
    if req.method != "POST":
        raise AadError(400, "invalid_request", 900561, "The endpoint only accepts POST requests.")
    if not tenant.names_tenant(tenant_name):
        raise AadError(400, "invalid_request", 90002,
                       f"Tenant '{tenant_name}' not found. Check to make sure you have the "
                       "correct tenant ID and are signing into the correct cloud.")
    form = _form(req)
    _check_grant(form)
    client_id = _client_id(form, req)
    if client_id != tenant.client_id:
        raise AadError(400, "unauthorized_client", 700016,
                       f"Application with identifier '{client_id}' was not found in the "
                       f"directory '{tenant_name}'.")
    _check_scope(form.get("scope"), sim.graph_bases(req))
    method = _authenticate_client(sim, req, form, client_id)
    req.note["client_auth"] = method
    lifetime = int(sim.settings["token_lifetime"])
    token = sim.auth.issue(sim.now(), lifetime)
    return json_response(200, {"token_type": "Bearer", "expires_in": lifetime,
                               "ext_expires_in": lifetime, "access_token": token}, graph=False)


def _form(req):
    ctype = req.headers.get("Content-Type", "")
    if "application/x-www-form-urlencoded" not in ctype.lower():
        return {}
    fields = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _missing(name):
    return AadError(400, "invalid_request", 900144,
                    f"The request body must contain the following parameter: '{name}'.")


def _check_grant(form):
    if "grant_type" not in form:
        raise _missing("grant_type")
    if form["grant_type"] != GRANT:
        raise AadError(400, "unsupported_grant_type", 70003,
                       f"The app requested an unsupported grant type '{form['grant_type']}'.")


def _basic_credentials(req):
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return unquote_plus(user), unquote_plus(password)


def _client_id(form, req):
    basic_id, _ = _basic_credentials(req)
    client_id = form.get("client_id") or basic_id
    if not client_id and form.get("client_assertion"):
        client_id = _claims_or_none(form["client_assertion"]).get("sub")
    if not client_id:
        raise _missing("client_id")
    return client_id


def _check_scope(scope, graph_bases):
    if not scope:
        raise AadError(400, "invalid_scope", 70011,
                       "The provided request must include a 'scope' input parameter.")
    allowed = {f"{base}/.default" for base in graph_bases}
    if scope not in allowed:
        raise AadError(400, "invalid_scope", 70011,
                       f"The provided value for the input parameter 'scope' is not valid. "
                       f"The scope {scope} is not valid.")


def _authenticate_client(sim, req, form, client_id):
    _, basic_secret = _basic_credentials(req)
    secret = form.get("client_secret", basic_secret)
    assertion = form.get("client_assertion")
    if secret is not None and assertion is not None:
        raise AadError(400, "invalid_request", 50027,
                       "Both a client_secret and a client_assertion were presented.")
    if assertion is not None:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise AadError(400, "invalid_request", 50027,
                           "client_assertion_type must be " + JWT_BEARER + ".")
        check_assertion(sim, req, assertion, client_id)
        return "assertion"
    if secret is None:
        raise AadError(400, "invalid_client", 7000218,
                       "The request body must contain the following parameter: "
                       "'client_assertion' or 'client_secret'.")
    expected = sim.tenant.client_secret
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        raise AadError(401, "invalid_client", 7000215,
                       "Invalid client secret provided. Ensure the secret being sent in the "
                       "request is the client secret value, not the client secret ID, for a "
                       f"secret added to app '{client_id}'.")
    return "secret"


# --- JWT client assertion ---------------------------------------------------------------
def _claims_or_none(assertion):
    try:
        claims = json.loads(b64url_decode(assertion.split(".")[1]))
    except (ValueError, IndexError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _bad_assertion(number, text):
    return AadError(401, "invalid_client", number, text)


def _parse_jwt(assertion):
    parts = assertion.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("JWT must have three parts")
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("JWT parts must be JSON objects")
    except ValueError:
        raise AadError(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
    signed = (parts[0] + "." + parts[1]).encode("ascii")
    return header, claims, signed, signature


def check_assertion(sim, req, assertion, client_id):
    header, claims, signed, signature = _parse_jwt(assertion)
    cert = sim.tenant.cert
    if cert is None:
        raise _bad_assertion(700027, "The application has no certificate registered.")
    _check_thumbprint(header, cert)
    _check_signature(header.get("alg"), signed, signature, cert)
    _check_claims(claims, client_id, sim.assertion_audiences(req))
    _check_times(claims, time.time())


def _check_thumbprint(header, cert):
    presented = header.get("x5t#S256") or header.get("x5t")
    if presented not in (cert.x5t_s256, cert.x5t):
        raise _bad_assertion(700027, "The certificate with identifier used to sign the client "
                             "assertion is not registered on application.")


def _check_signature(alg, signed, signature, cert):
    verifiers = {"PS256": rsa.verify_pss, "RS256": rsa.verify_pkcs1v15}
    if alg not in verifiers:
        raise _bad_assertion(5002738, f"Invalid JWT token. '{alg}' is not a supported "
                             "signature algorithm.")
    if not verifiers[alg](signed, signature, cert.n, cert.e):
        raise _bad_assertion(700027, "Client assertion contains an invalid signature.")


def _check_claims(claims, client_id, allowed_audiences):
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise _bad_assertion(700021, "Client assertion application identifier doesn't match "
                             "'client_id' parameter (iss and sub must both be the client id).")
    audiences = claims.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    if not {a for a in audiences if isinstance(a, str)} & allowed_audiences:
        raise _bad_assertion(700023, "Client assertion audience claim does not match Realm "
                             "issuer (aud must be {login_url}/{tenant}/oauth2/v2.0/token).")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise AadError(400, "invalid_request", 50027,
                       "JWT token is invalid or malformed (no jti claim).")


def _check_times(claims, now):
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if not all(isinstance(v, (int, float)) for v in (nbf, exp)):
        raise AadError(400, "invalid_request", 50027,
                       "JWT token is invalid or malformed (nbf and exp are required).")
    if nbf > now + CLOCK_SKEW or exp <= now:
        raise _bad_assertion(700024, "Client assertion is not within its valid time range. "
                             f"Current time: {int(now)}, assertion nbf: {nbf}, exp: {exp}.")
    if exp - nbf > MAX_ASSERTION_LIFE:
        raise _bad_assertion(700024, "Client assertion is not within its valid time range: "
                             f"lifetime {exp - nbf} s exceeds {MAX_ASSERTION_LIFE} s.")
