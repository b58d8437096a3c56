"""GraphQL subscriptions (Strawberry, ``graphql-transport-ws``) behind the asgi_ws middlewares,
fed by Rooms across processes. ``python -m examples.graphql_app``; see docs/graphql.md."""
