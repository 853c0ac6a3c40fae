"""The two error dialects: Graph's {"error":{code,message,innerError}} and Entra's
OAuth {"error","error_description","error_codes",...}. Handlers raise; the
dispatcher renders with the request's ids."""
import time

from .util import iso, json_response, new_id


class GraphError(Exception):
    def __init__(self, status, code, message, headers=None, inner_code=None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.inner_code = inner_code

    def response(self, request_id, client_request_id):
        inner = {"date": iso(time.time()), "request-id": request_id,
                 "client-request-id": client_request_id}
        if self.inner_code:
            inner = {"code": self.inner_code, **inner}
        body = {"error": {"code": self.code, "message": self.message, "innerError": inner}}
        return json_response(self.status, body, self.headers)


def bad_request(message, code="BadRequest"):
    return GraphError(400, code, message)


def not_found(message):
    return GraphError(404, "itemNotFound", message)


class AadError(Exception):
    """An Entra ID token-endpoint error, e.g. AadError(401, "invalid_client", 7000215, "...")."""

    def __init__(self, status, error, number, description):
        super().__init__(f"AADSTS{number}: {description}")
        self.status = status
        self.error = error
        self.number = number
        self.description = description

    def response(self, request_id, client_request_id):
        trace = new_id()
        text = (f"AADSTS{self.number}: {self.description} Trace ID: {trace} "
                f"Correlation ID: {client_request_id} Timestamp: {iso(time.time())}")
        body = {"error": self.error, "error_description": text,
                "error_codes": [self.number],
                "timestamp": iso(time.time()).replace("T", " ").rstrip("Z") + "Z",
                "trace_id": trace, "correlation_id": client_request_id,
                "error_uri": f"https://login.microsoftonline.com/error?code={self.number}"}
        return json_response(self.status, body, graph=False)
