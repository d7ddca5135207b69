"""The create-only authorization and authentication kinds, answered from RBAC and the token
authenticator instead of being stored:

- `authorization.k8s.io/v1` SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview,
  LocalSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i --list`);
- `authentication.k8s.io/v1` SelfSubjectReview (`kubectl auth whoami`) and TokenReview;
- the `serviceaccounts/token` subresource (TokenRequest, `kubectl create token`).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from clustersim.apiserver.auth import TokenAuthenticator
from clustersim.apiserver.clock import rfc3339
from clustersim.apiserver.errors import bad_request, invalid, invalid_value
from clustersim.apiserver.rbac import (
    MASTERS_GROUP,
    Attributes,
    RbacAuthorizer,
    UserInfo,
)
from clustersim.apiserver.sa_tokens import (
    DEFAULT_AUDIENCES,
    DEFAULT_EXPIRATION_SECONDS,
    MAX_EXPIRATION_SECONDS,
    MIN_EXPIRATION_SECONDS,
    ServiceAccountTokens,
)

JsonObject = dict[str, Any]

AUTHORIZATION = "authorization.k8s.io"
AUTHENTICATION = "authentication.k8s.io"
REVIEW_KINDS = frozenset({"SelfSubjectAccessReview", "SubjectAccessReview",
                          "LocalSubjectAccessReview", "SelfSubjectRulesReview",
                          "SelfSubjectReview", "TokenReview"})


def _spec(body: Any) -> JsonObject:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise bad_request("spec must be an object")
    return spec


def attributes_from_spec(user: UserInfo, spec: JsonObject, namespace: str | None,
                         kind: str) -> Attributes:
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if (resource is None) == (non_resource is None):
        raise invalid(AUTHORIZATION, kind, "", [invalid_value(
            "spec.resourceAttributes", None,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified")])
    if non_resource is not None:
        return Attributes(user, str(non_resource.get("verb") or ""), resource_request=False,
                          path=str(non_resource.get("path") or ""))
    assert resource is not None
    own_namespace = str(resource.get("namespace") or "")
    if namespace is not None:
        if own_namespace and own_namespace != namespace:
            raise invalid(AUTHORIZATION, kind, "", [invalid_value(
                "spec.resourceAttributes.namespace", own_namespace,
                "must match metadata.namespace")])
        own_namespace = namespace
    return Attributes(user, str(resource.get("verb") or ""),
                      group=str(resource.get("group") or ""),
                      version=str(resource.get("version") or ""),
                      resource=str(resource.get("resource") or ""),
                      subresource=str(resource.get("subresource") or ""),
                      namespace=own_namespace, name=str(resource.get("name") or ""))


class AccessReviews:
    """Answers review creations for one server."""

    def __init__(self, authorizer: RbacAuthorizer, authenticator: TokenAuthenticator,
                 tokens: ServiceAccountTokens) -> None:
        self.authorizer = authorizer
        self.authenticator = authenticator
        self.tokens = tokens

    def review(self, kind: str, api_version: str, user: UserInfo, namespace: str | None,
               body: Any) -> JsonObject:
        spec = _spec(body)
        answer: JsonObject = {"kind": kind, "apiVersion": api_version,
                              "metadata": {"creationTimestamp": None}, "spec": spec}
        if namespace is not None:
            answer["metadata"]["namespace"] = namespace
        if kind == "SelfSubjectAccessReview":
            answer["status"] = self._access(attributes_from_spec(user, spec, None, kind))
        elif kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
            subject = self._subject(spec, kind)
            answer["status"] = self._access(attributes_from_spec(subject, spec, namespace, kind))
        elif kind == "SelfSubjectRulesReview":
            answer["status"] = self._rules(user, str(spec.get("namespace") or ""))
        elif kind == "SelfSubjectReview":
            answer["status"] = {"userInfo": user.describe()}
        elif kind == "TokenReview":
            found = self.authenticator.user_for_token(str(spec.get("token") or ""))
            answer["status"] = ({"authenticated": True, "user": found.describe(),
                                 "audiences": list(spec.get("audiences") or DEFAULT_AUDIENCES)}
                                if found else {"authenticated": False, "user": {}})
        return answer

    @staticmethod
    def _subject(spec: JsonObject, kind: str) -> UserInfo:
        name = str(spec.get("user") or "")
        groups = tuple(str(g) for g in spec.get("groups") or [])
        if not name and not groups:
            raise invalid(AUTHORIZATION, kind, "", [invalid_value(
                "spec.user", "", "at least one of user or group must be specified")])
        return UserInfo(name, str(spec.get("uid") or ""), groups)

    def _access(self, attributes: Attributes) -> JsonObject:
        allowed, reason = self.authorizer.decide(attributes)
        status: JsonObject = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        return status

    def _rules(self, user: UserInfo, namespace: str) -> JsonObject:
        if MASTERS_GROUP in user.groups:
            return {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": False}
        resource_rules, non_resource_rules = [], []
        for rule in self.authorizer.rules_for(user, namespace):
            if rule.get("nonResourceURLs"):
                non_resource_rules.append({"verbs": list(rule.get("verbs") or []),
                                           "nonResourceURLs": list(rule["nonResourceURLs"])})
                continue
            entry = {k: list(rule.get(k) or []) for k in ("verbs", "apiGroups", "resources")}
            if rule.get("resourceNames"):
                entry["resourceNames"] = list(rule["resourceNames"])
            resource_rules.append(entry)
        return {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                "incomplete": False}

    def token_request(self, service_account: JsonObject, body: Any, now: datetime) -> JsonObject:
        """A TokenRequest answered with a fresh token for this ServiceAccount."""
        spec = copy.deepcopy(_spec(body))
        metadata = service_account.get("metadata") or {}
        name, namespace = str(metadata.get("name")), str(metadata.get("namespace"))
        expiration = spec.get("expirationSeconds")
        expiration = DEFAULT_EXPIRATION_SECONDS if expiration is None else expiration
        if not isinstance(expiration, int) or not (
                MIN_EXPIRATION_SECONDS <= expiration <= MAX_EXPIRATION_SECONDS):
            raise invalid(AUTHENTICATION, "TokenRequest", name, [invalid_value(
                "spec.expirationSeconds", expiration,
                "may not specify a duration less than 10 minutes")])
        audiences = tuple(str(a) for a in spec.get("audiences") or DEFAULT_AUDIENCES)
        token, expires = self.tokens.mint(namespace, name, str(metadata.get("uid")), audiences,
                                          expiration, now.timestamp())
        spec.update({"audiences": list(audiences), "expirationSeconds": expiration,
                     "boundObjectRef": spec.get("boundObjectRef")})
        return {
            "kind": "TokenRequest", "apiVersion": f"{AUTHENTICATION}/v1",
            "metadata": {"name": name, "namespace": namespace,
                         "creationTimestamp": rfc3339(now)},
            "spec": spec,
            "status": {"token": token,
                       "expirationTimestamp": rfc3339(datetime.fromtimestamp(expires, UTC))},
        }
