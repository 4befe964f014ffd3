#!/usr/bin/env bash
# Move every ReplicationGroup whose spec.primaryAZ is FROM to TO: an AZ evacuation, or the way back.
#
#   deploy/evacuate.sh FROM TO                    every namespace
#   deploy/evacuate.sh FROM TO -n NAMESPACE       one namespace
#   deploy/evacuate.sh FROM TO -A -l tier=db      any `kubectl get` selection
#   DRY_RUN=1 deploy/evacuate.sh FROM TO ...      list what would be patched; patch nothing
#
# It only patches spec.primaryAZ; azswitch does the rest (AZSWITCH_MAX_CONCURRENT_OPERATIONS at a time,
# the others Pending with reason ConcurrencyLimit). Follow it with `kubectl get rg -A -w`.
#
# Resources managed by Argo CD or Flux are refused (set FORCE=1 to patch them anyway): their controller
# would put spec.primaryAZ back from Git, and azswitch would then carry that out as a switchover back.
# For those, change primaryAZ in Git, or suspend their sync first.
#
# Needs only kubectl (any version with jsonpath filters) and bash.
set -euo pipefail

usage="usage: $0 FROM_AZ TO_AZ [-A | -n NAMESPACE | other kubectl get selection]  (env: DRY_RUN=1, FORCE=1)"
if [[ $# -lt 2 || -z $1 || -z $2 || $1 == -* || $2 == -* ]]; then
    echo "$usage" >&2
    exit 2
fi
from=$1 to=$2
shift 2
if [[ $from == "$to" ]]; then
    echo "FROM and TO are the same AZ ($from): nothing to do" >&2
    exit 2
fi
if [[ $from == *[\"\\]* || $to == *[\"\\]* ]]; then
    echo "an AZ name cannot contain quotes or backslashes: got $from, $to" >&2
    exit 2
fi
[[ $# -gt 0 ]] || set -- -A
kubectl=${KUBECTL:-kubectl}

# One line per match: namespace|name|Argo CD tracking id|Flux kustomization|Flux helm release|Argo CD instance
template='{range .items[?(@.spec.primaryAZ=="'"$from"'")]}'
template+='{.metadata.namespace}{"|"}{.metadata.name}{"|"}'
template+='{.metadata.annotations.argocd\.argoproj\.io/tracking-id}{"|"}'
template+='{.metadata.labels.kustomize\.toolkit\.fluxcd\.io/name}{"|"}'
template+='{.metadata.labels.helm\.toolkit\.fluxcd\.io/name}{"|"}'
template+='{.metadata.labels.app\.kubernetes\.io/instance}{"\n"}{end}'
matches=$("$kubectl" get replicationgroups.azswitch.io "$@" -o jsonpath="$template")

if [[ -z $matches ]]; then
    echo "no ReplicationGroup with spec.primaryAZ=$from in this selection ($*): nothing to do"
    exit 0
fi

count=0 refused=0 patched=0
while IFS='|' read -r namespace name tracking flux_ks flux_helm instance; do
    count=$((count + 1))
    owner=""
    [[ -n $tracking || -n $instance ]] && owner="Argo CD (${tracking:-app.kubernetes.io/instance=$instance})"
    [[ -n $flux_ks ]] && owner="Flux Kustomization $flux_ks"
    [[ -n $flux_helm ]] && owner="Flux HelmRelease $flux_helm"
    if [[ -n $owner && ${FORCE:-0} != 1 ]]; then
        echo "REFUSED  $namespace/$name is managed by $owner: change spec.primaryAZ to $to in Git (or FORCE=1)"
        refused=$((refused + 1))
        continue
    fi
    if [[ ${DRY_RUN:-0} == 1 ]]; then
        echo "would patch  $namespace/$name: spec.primaryAZ $from -> $to"
        continue
    fi
    "$kubectl" patch replicationgroups.azswitch.io "$name" -n "$namespace" --type merge \
        -p '{"spec":{"primaryAZ":"'"$to"'"}}' >/dev/null
    echo "patched  $namespace/$name: spec.primaryAZ $from -> $to"
    patched=$((patched + 1))
done <<<"$matches"

echo "$count matched, $patched patched, $refused refused$([[ ${DRY_RUN:-0} == 1 ]] && echo ' (dry run)')"
if [[ $patched -gt 0 ]]; then
    echo "follow it: $kubectl get rg -A -w   (at most AZSWITCH_MAX_CONCURRENT_OPERATIONS switch at once)"
fi
[[ $refused -eq 0 ]] || exit 1
