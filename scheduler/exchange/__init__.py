"""The Exchange backend: EWS through exchangelib.

``account.build_account`` makes the connection; ``calendar.ExchangeCalendar``
is the forum calendar (Exchange mails the invitations itself);
``mailbox.ExchangeSource`` and ``mailbox.ExchangeTransport`` read agenda
items from and send mail through the forum mailbox; ``errors`` maps
exchangelib's exceptions to the ports' TransientError / PermanentError.
"""
