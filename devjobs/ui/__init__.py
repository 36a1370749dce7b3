"""The Jobs view: a web app for an Environment's jobs, live logs and a Run button.

Modules, one concept each:
    cluster    everything taken from the rest of devjobs and the cluster (imports, the
               shared reflectors, plans): the one module to update when those move
    views      pure view models: API JSON of Environments, Jobs and pods -> page data
    security   pure request checks: Host, start token, CSRF, CSP, CORS
    access     who the viewer is and what they may do (SelfSubjectAccessReview locally,
               TokenReview + SubjectAccessReview in the cluster)
    logs       one upstream log stream per container, fanned out to every follower
    app        the Starlette application: pages, `/api/v1/`, event streams
"""
