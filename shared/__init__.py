"""The licensing enforcement engine. Never imports azure.functions (triggers live in function_app.py)."""
