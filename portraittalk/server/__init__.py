"""The app's service: everything behind the page that needs no UI toolkit.

``settings`` reads the server's environment, ``results`` keeps finished renders,
``uploads`` bounds the upload folder, ``compare`` measures two videos side by side,
``texts`` turns a run report into what a visitor reads, and ``service`` ties them to
one pipeline. ``page`` alone speaks Gradio: the page's event handlers around the service.
"""
