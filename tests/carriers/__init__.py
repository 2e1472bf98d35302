"""Carrier simulators for call-flow tests: Twilio (TwiML executed the way Twilio does) and
Telnyx Call Control (commands received, signed events sent), driven by scripted callers
and callee lines (``scripts.py``). Timing is virtual: scripted seconds are reported, never
slept (``TwilioSimulator(real_time=1.0)`` paces requests in real time when the app times
something itself).

    def test_a_call(carriers):                      # conftest.py: the app over HTTP
        pool = carriers.make_pool(record_calls=True)
        call = carriers.twilio.call(number, Caller(keys=(Keys("94105"),), talk=75),
                                    lines={"+12125550199": Line.answers(after=4)})
        assert call.errors == [] and call.bridged.target == "+12125550199"
        telnyx_call = carriers.telnyx.call(number, Caller(talk=75))
        assert [c["name"] for c in telnyx_call.acted()] == ["transfer"]
"""
