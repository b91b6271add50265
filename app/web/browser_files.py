"""Which third-party browser files the pages load, by npm package (versions pinned
in package.json and package-lock.json), and each package's licence file.

Plain data, importing nothing: the wheel's build hook (hatch_build.py) reads it
before anything is installed, and app.web.assets serves the same list.
"""

FILES: dict[str, tuple[str, ...]] = {
    "react": ("umd/react.production.min.js",),
    "react-dom": ("umd/react-dom.production.min.js",),
    "graphiql": ("graphiql.min.js", "graphiql.min.css"),
    "graphql-ws": ("umd/graphql-ws.min.js",),
}

# Carried beside the files in the wheel (each is MIT: its notice goes with copies).
LICENSES: dict[str, str] = {
    "react": "LICENSE",
    "react-dom": "LICENSE",
    "graphiql": "LICENSE",
    "graphql-ws": "LICENSE.md",
}

# Where the wheel carries them, inside the package: app/web/<BUNDLE>/<package>/<file>.
BUNDLE = "bundled"
