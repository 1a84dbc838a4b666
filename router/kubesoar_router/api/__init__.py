"""The runs.kubesoar.dev/v1alpha1 API: runs and alerts from the system of record, served
by the router as an extension API server behind the cluster's aggregator (the
metrics-server pattern), so `kubectl get runs -n acme` works with the user's own
kubeconfig and RBAC.

    kubectl ─▶ kube-apiserver (authenticates the user) ─▶ aggregator ─▶ router :8443
                 front-proxy client certificate + X-Remote-User / X-Remote-Group
    router: check the certificate against the requestheader CA (identity.py), ask the
    cluster whether that user may <verb> <resource> in <namespace> (access.py, a
    SubjectAccessReview), then read or write PostgreSQL (kubesoar_store.runviews,
    kubesoar_store.alertviews).

Modules by concern:

- `identity`     who is asking: the front-proxy certificate and headers
- `access`       may they: SubjectAccessReview, with a short decision cache
- `selectors`    label and field selectors → store filters
- `negotiation`  Table, metadata or objects, from the Accept header
- `objects`      rows → Run / Alert objects and Table rows
- `listing`      list and watch, one `View` per resource
- `watching`     watch=true by polling the database (what resourceVersion means)
- `status`       Kubernetes `Status` error bodies
- `discovery`    /apis, the group, the resource list
- `openapi`      the schemas `kubectl explain` reads
- `handlers`     the routes: get, patch/update of alerts, discovery, OpenAPI
- `server`       the HTTPS app and its TLS context
"""
