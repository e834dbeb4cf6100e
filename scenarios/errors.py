class EventRejected(Exception):
    """The event cannot be accepted as sent; nothing was stored. The project's error handler
    answers it as {"code", "message", "fields"} with `http_status`."""

    http_status = 400

    def __init__(self, code: str, message: str, fields: dict | None = None, http_status: int | None = None):
        super().__init__(message)
        self.error_code = code
        self.message = message
        self.fields = fields or {}
        if http_status:
            self.http_status = http_status
