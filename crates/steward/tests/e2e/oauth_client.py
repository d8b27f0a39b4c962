"""Obtains a Steward access token with a standard OAuth 2.0 client library (authlib).

Usage: oauth_client.py TOKEN_URL CLIENT_ID CLIENT_SECRET AUTH_METHOD
AUTH_METHOD is client_secret_basic or client_secret_post. Prints the token response as JSON.
"""

import json
import sys

from authlib.integrations.requests_client import OAuth2Session


def main() -> int:
    token_url, client_id, client_secret, method = sys.argv[1:5]
    session = OAuth2Session(client_id, client_secret, token_endpoint_auth_method=method)
    try:
        token = session.fetch_token(token_url, grant_type="client_credentials")
    except Exception as error:  # authlib raises OAuthError subclasses; print and fail
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(dict(token)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
